"""The provider plugin interface: one async method and ``aclose``.

A provider turns one :class:`Call` into a :class:`Result` or raises an error of
:mod:`taskgate.errors`' ``ProviderError`` tree. It does not retry, fail over, time out or
meter: the scheduler wraps every provider with those.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from taskgate.config import Instance, Route

Emit = Callable[[dict[str, Any]], Awaitable[None]]


async def _no_progress(_: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Call:
    task_id: str
    kind: str
    model: str
    input: Any
    params: dict[str, Any]
    attempt: int
    instance: Instance
    route: Route
    emit: Emit = _no_progress  # progress: tokens, percent, provider job ids

    def option(self, name: str, default: Any = None) -> Any:
        """An option of the instance, else of the route, else ``default``."""
        return self.instance.options.get(name, self.route.options.get(name, default))


@dataclass(frozen=True, slots=True)
class OutputFile:
    """Bytes a provider produced (an image, audio, a video), kept in taskgate's storage."""

    data: bytes
    content_type: str
    name: str = "output"


@dataclass(frozen=True, slots=True)
class Result:
    output: Any
    usage: dict[str, Any] = field(default_factory=dict)
    files: tuple[OutputFile, ...] = ()  # stored by the scheduler; the result lists them

    def as_dict(self) -> dict[str, Any]:
        """Output and usage; files are added by the scheduler once stored."""
        return {"output": self.output, "usage": self.usage}


class Provider(abc.ABC):
    """Subclass, implement :meth:`run`, and register with ``@register_provider("name")``."""

    kinds: ClassVar[frozenset[str] | None] = None  # None: accepts any kind

    def __init__(self, route: Route) -> None:
        self.route = route

    @abc.abstractmethod
    async def run(self, call: Call) -> Result: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass
