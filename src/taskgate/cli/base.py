"""The ``taskgate`` command group and what its commands share: the options naming the
config file, the server and the key; how answers are printed (:func:`output`: a table, or
JSON with ``--json``); and how failures are told, in one line and never as a traceback
(:class:`Taskgate` turns a server that cannot be reached, a refused key, an API error and
a bad config file into a :class:`click.ClickException`, for every command).

A command of a running server, in its own module imported by ``cli/__init__.py``::

    @main.command()
    @URL
    @KEY
    @JSON_OPTION
    def things(url: str, key: str, as_json: bool) -> None:
        \"\"\"List things.\"\"\"
        with Client(url, key) as c:
            found = c.call("GET", "/v1/things")
        output(found["data"], {"name": "name", "in_flight": "in flight"}, as_json,
               title="Things", raw=found)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import click
import httpx

from taskgate import config
from taskgate.client import DEFAULT_URL, ApiError

CONFIG = click.option(
    "--config",
    "config_path",
    envvar="TASKGATE_CONFIG",
    show_envvar=True,
    type=click.Path(exists=True, dir_okay=False),
    help="YAML config file (default: the packaged embedded config).",
)

_URL_META = "taskgate.url"  # where --url is kept for the error messages of any command


class Taskgate(click.Group):
    """The command group; failures every command may meet become one line (exit code 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            raise click.ClickException(api_problem(exc)) from None
        except httpx.TimeoutException as exc:
            where = ctx.meta.get(_URL_META) or _server_of(exc)
            raise click.ClickException(f"taskgate at {where} did not answer in time") from None
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            where = ctx.meta.get(_URL_META) or _server_of(exc)
            raise click.ClickException(
                f"cannot reach taskgate at {where}: {exc or type(exc).__name__} "
                "(is it running? set --url or TASKGATE_URL)"
            ) from None
        except config.ConfigError as exc:
            raise click.ClickException(str(exc)) from None


def api_problem(exc: ApiError) -> str:
    """An API error as one line: a refused key says what to do about it."""
    if exc.status == 401:
        return f"the server refused the key: {exc.message} (401; set --key or TASKGATE_KEY)"
    if exc.status == 403:
        return f"not allowed with this key: {exc.message} (403)"
    return str(exc)


def _server_of(exc: Exception) -> str:
    try:
        url = exc.request.url  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # raised before a request was made
        return "the given URL"
    return f"{url.scheme}://{url.netloc.decode()}"


@click.group(cls=Taskgate)
def main() -> None:
    """taskgate: gateway and scheduler for AI model tasks.

    Commands that use a running server take --url and --key, or TASKGATE_URL and
    TASKGATE_KEY; those that print tables take --json for scripts."""


def _keep_url(ctx: click.Context, _: click.Parameter, value: str) -> str:
    ctx.meta[_URL_META] = value
    return value


URL = click.option(
    "--url",
    envvar="TASKGATE_URL",
    show_envvar=True,
    default=DEFAULT_URL,
    show_default=True,
    callback=_keep_url,
    help="The taskgate server.",
)
KEY = click.option(
    "--key", envvar="TASKGATE_KEY", show_envvar=True, required=True, help="An API key."
)
JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table."
)

# colours of the values people look for; shown on a terminal only (and never with NO_COLOR)
STYLES = {
    "SUCCESS": "green",
    "FAILED": "red",
    "TIMEOUT": "red",
    "CANCELLED": "yellow",
    "PENDING": "cyan",
    "PROCESSING": "blue",
    "healthy": "green",
    "cooling_down": "red",
    "probing": "yellow",
    "paused": "yellow",
    "active": "green",
    "draining": "yellow",
    "revoked": "red",
}


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def output(
    rows: Iterable[Mapping[str, Any]],
    columns: Mapping[str, str],
    as_json: bool,
    *,
    title: str | None = None,
    raw: Any = None,
) -> None:
    """Print ``rows`` as an aligned table whose ``columns`` map a row's key to its header;
    with ``as_json``, print ``raw`` (default: the rows) as JSON instead."""
    rows = list(rows)
    if as_json:
        print_json(rows if raw is None else raw)
    else:
        show(table(rows, columns, title=title))


def table(
    rows: Iterable[Mapping[str, Any]], columns: Mapping[str, str], *, title: str | None = None
) -> Any:
    """A Rich table of ``rows`` (see :func:`cell`); numeric columns are right-aligned."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rows = list(rows)
    out = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        title_justify="left",
        title_style="bold",
    )
    for key, header in columns.items():
        numeric = all(_is_number(r.get(key)) for r in rows if r.get(key) is not None)
        out.add_column(header, justify="right" if numeric and rows else "left", overflow="fold")
    for row in rows:
        texts = [cell(row.get(k)) for k in columns]
        out.add_row(*(Text(t, style=STYLES.get(t, "")) for t in texts))
    if not rows:
        out.caption = "(none)"
    return out


def cell(value: Any) -> str:
    """A value as a table shows it: ``-`` for nothing, short numbers, ``k=v`` for a mapping."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))
    if isinstance(value, Mapping):
        return " ".join(f"{k}={_inner(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_inner(v) for v in value) or "-"
    return str(value)


def _inner(value: Any) -> str:
    """A value inside a mapping or list: nested ones as compact JSON."""
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return cell(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def show(*renderables: Any) -> None:
    """Print Rich renderables (tables) on stdout. Piped, lines are never wrapped or cut
    (one row, one line, for grep and awk), carry no colour codes or trailing blanks."""
    from rich.console import Console

    def each(console: Any) -> None:
        for n, renderable in enumerate(renderables):
            if n:
                console.line()
            console.print(renderable)

    if sys.stdout.isatty():
        each(Console())
        return
    console = Console(width=100_000, soft_wrap=False, no_color=True)
    with console.capture() as captured:
        each(console)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def stderr() -> Any:
    """The console for progress: live on a terminal, plain lines when piped."""
    from rich.console import Console

    return Console(stderr=True)
