"""The ``taskgate`` command group and what its commands share: the options naming the
config file, the server and the key, and how answers are printed."""

from __future__ import annotations

import json
from typing import Any

import click

from taskgate.client import DEFAULT_URL, ApiError

CONFIG = click.option(
    "--config",
    "config_path",
    envvar="TASKGATE_CONFIG",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML config file (default: the packaged embedded config).",
)


@click.group()
def main() -> None:
    """taskgate: gateway and scheduler for AI model tasks."""


URL = click.option("--url", envvar="TASKGATE_URL", default=DEFAULT_URL, show_default=True)
KEY = click.option("--key", envvar="TASKGATE_KEY", required=True, help="API key ($TASKGATE_KEY).")


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def answer(fn: Any) -> Any:
    try:
        return fn()
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc
