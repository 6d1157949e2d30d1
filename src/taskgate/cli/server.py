"""Running taskgate: ``serve`` (everything in one process), ``api`` and ``worker``."""

from __future__ import annotations

import asyncio

import click

from taskgate import config
from taskgate.cli.base import CONFIG, main

GRACE = click.option(
    "--grace",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds that running tasks get to finish on shutdown.",
)
HOST = click.option("--host", help="Listen address (overrides the config).")
PORT = click.option("--port", type=int, help="Listen port (overrides the config).")


@main.command()
@CONFIG
@HOST
@PORT
@GRACE
def serve(config_path: str | None, host: str | None, port: int | None, grace: float) -> None:
    """Run the API, the scheduler and the workers in one process."""
    _run_http(config_path, host, port, grace, run_scheduler=True)


@main.command()
@CONFIG
@HOST
@PORT
@GRACE
def api(config_path: str | None, host: str | None, port: int | None, grace: float) -> None:
    """Run the HTTP API only; ``taskgate worker`` processes run the tasks."""
    _run_http(config_path, host, port, grace, run_scheduler=False)


@main.command()
@CONFIG
@GRACE
@click.option(
    "--route",
    "routes",
    multiple=True,
    help="Run only this route's tasks (repeatable; default: every route).",
)
def worker(config_path: str | None, grace: float, routes: tuple[str, ...]) -> None:
    """Run the scheduler and workers only (no HTTP), against the configured store."""
    from taskgate import worker as worker_mod

    settings = _configured(config_path)
    source = config.source(config_path)
    try:
        asyncio.run(worker_mod.run(settings, list(routes) or None, grace, source))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _configured(config_path: str | None) -> config.Settings:
    """The settings, with logging and (if enabled) tracing set up as they say."""
    from taskgate.ops import tracing
    from taskgate.ops.logs import setup_logging

    settings = config.load(config_path)
    setup_logging(
        settings.log_level, settings.log_format, settings.log_file, settings.log_retention_days
    )
    try:
        tracing.from_settings(settings.tracing)  # the process's exporter, from here on
    except tracing.TracingUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    return settings


def _run_http(
    config_path: str | None, host: str | None, port: int | None, grace: float, run_scheduler: bool
) -> None:
    import uvicorn

    from taskgate.api import create_app
    from taskgate.api.one_write import OneWritePerResponse

    settings = _configured(config_path)
    source = config.source(config_path)  # read again on a reload
    app = create_app(settings, run_scheduler=run_scheduler, grace=grace, config_path=source)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level,
        loop="uvloop",
        http=OneWritePerResponse,  # httptools, a response in one write
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(grace) + 5,
    )
