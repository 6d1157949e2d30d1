"""A config file read for a reload (``POST /v1/admin/reload``, SIGHUP): everything
:func:`taskgate.config.load` checks, and what only building the routes finds (an unknown
provider, an instance its provider refuses, a bad discovery option). A file that fails says
which file, line and key are wrong, in one :class:`ConfigInvalid`; nothing is applied."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from taskgate import config
from taskgate.config import Settings
from taskgate.discovery import Discovery
from taskgate.providers import build, lookup

Loc = Sequence[int | str]
SHOWN = 3  # problems named in one message


class ConfigInvalid(ValueError):
    """A config file that cannot be used: ``file``, ``line`` (1-based, when known), ``key``
    (dotted, as ``routes.0.instances.1.max_concurrency``) and what is wrong with it."""

    def __init__(
        self, file: Path | None, problem: str, key: str = "", line: int | None = None
    ) -> None:
        where = [f"{file}, line {line}" if line else str(file)] if file else []
        super().__init__(": ".join([*where, *([key] if key else []), problem]))
        self.file = str(file) if file else None
        self.line, self.key, self.problem = line, key, problem

    def details(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "key": self.key or None}


async def read_checked(path: Path) -> Settings:
    """The settings of ``path``, refused with a :class:`ConfigInvalid` unless every route
    can be built."""
    settings = read(path)
    await check_routes(settings, path)
    return settings


def read(path: Path) -> Settings:
    """:func:`taskgate.config.load`, its errors as one :class:`ConfigInvalid`."""
    try:
        return config.load(path)
    except OSError as exc:
        raise ConfigInvalid(path, f"cannot read it: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigInvalid(path, f"not valid YAML: {problem}", line=_line(mark)) from None
    except ValidationError as exc:
        raise _invalid(path, exc) from None
    except ValueError as exc:  # the top level is not a mapping
        raise ConfigInvalid(path, str(exc).removeprefix(f"{path}: ")) from None


async def check_routes(settings: Settings, path: Path) -> None:
    """Build each route's provider (and model discovery) as the scheduler will, then let
    it go: a route its provider refuses is named here rather than failing a worker."""
    for n, route in enumerate(settings.routes):
        try:
            lookup(route.provider)
        except LookupError as exc:
            raise at(path, ("routes", n, "provider"), str(exc).strip("'\"")) from None
        try:
            provider = build(route)
            Discovery([route])
        except (ValueError, TypeError) as exc:
            raise at(path, ("routes", n), str(exc)) from None
        await provider.aclose()


def at(path: Path, loc: Loc, problem: str) -> ConfigInvalid:
    """A problem at ``loc`` of the file, with its line if the file can be read."""
    return ConfigInvalid(path, problem, key=dotted(loc), line=locate(path, loc))


def _invalid(path: Path, exc: ValidationError) -> ConfigInvalid:
    """The first problem pydantic found, with its key and line; the next few after it."""
    first, *others = exc.errors()
    loc = tuple(first.get("loc", ()))
    problem = _message(first)
    also = [f"{dotted(e.get('loc', ())) or 'top level'}: {_message(e)}" for e in others]
    if also:
        left = len(also) - (SHOWN - 1)
        problem += "; also " + "; ".join(also[: SHOWN - 1])
        problem += f" (and {left} more)" if left > 0 else ""
    return ConfigInvalid(path, problem, key=dotted(loc), line=locate(path, loc) if loc else None)


def _message(error: Any) -> str:
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc)


def locate(path: Path, loc: Loc) -> int | None:
    """The line (1-based) of the deepest node of ``loc`` the YAML file has; None if the
    file cannot be read or parsed again."""
    try:
        node = yaml.compose(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    line = _line(node.start_mark) if node is not None else None
    for part in loc:
        node = _child(node, part)
        if node is None:
            break
        line = _line(node.start_mark)
    return line


def _child(node: Any, part: int | str) -> Any:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == str(part):
                return value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    return None


def _line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None
