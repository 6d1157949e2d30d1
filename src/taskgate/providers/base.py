"""The provider plugin interface: one async method and ``aclose``.

A provider turns one :class:`Call` into a :class:`Result` or raises an error of
:mod:`taskgate.errors`' ``ProviderError`` tree. It does not retry, fail over, time out or
meter: the scheduler wraps every provider with those.

A backend that answers a long request (a video) with a job to poll returns a :class:`Job`
from ``run`` instead. The scheduler stores the job on the task, frees the backend slot, and
calls ``poll`` with backoff until it returns a ``Result`` (or raises); after a restart it
resumes polling from the stored job. ``cancel_job`` is called when the task is cancelled.
``poll`` raises ``errors.job_ended(error)`` when the job itself failed; any other retryable
error is taken as a failed poll request, and the job is polled again.

Whatever a provider hands back (results, job data, progress, errors) may quote the instance's
secret, as a backend may echo it: the scheduler blanks it out (:mod:`taskgate.providers.redact`)
before anything is stored, published or logged.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from taskgate import errors
from taskgate.config import Instance, Route
from taskgate.params import Bounds

Emit = Callable[[dict[str, Any]], Awaitable[None]]


async def _no_progress(_: dict[str, Any]) -> None:
    return None


async def _no_files(file_id: str) -> OutputFile:
    raise errors.InvalidInput(f"file {file_id!r} cannot be read here")


async def no_fetch(url: str, what: str) -> OutputFile:
    raise errors.InvalidInput(f"{what}: media URLs are not downloaded here")


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
    # progress: text pieces ({"delta": ...}, {"reasoning_delta": ...}), percent, job ids
    emit: Emit = _no_progress
    # The bytes of a file of the task's tenant, by id (inputs that reference uploads);
    # NotFound-style failures come back as errors.InvalidInput.
    read_file: Callable[[str], Awaitable[OutputFile]] = _no_files
    # The bytes at a client's media URL (what it names, say "image"), downloaded within the
    # limits of config ``media`` (providers/fetch.py), once the route allowed such URLs;
    # failures come back as errors.InvalidInput.
    fetch_url: Callable[[str, str], Awaitable[OutputFile]] = no_fetch

    def option(self, name: str, default: Any = None) -> Any:
        """An option of the instance, else of the route, else ``default``."""
        return self.instance.options.get(name, self.route.options.get(name, default))


@dataclass(frozen=True, slots=True)
class OutputFile:
    """A file's bytes: what a provider produced (an image, audio, a video; the scheduler
    keeps it in taskgate's storage) or an input file read with ``Call.read_file``."""

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


@dataclass(frozen=True, slots=True)
class Job:
    """A job running on the backend's side. ``id`` is the backend's job id; ``data`` is
    anything else ``poll`` needs (JSON-storable: it is kept on the task across restarts);
    ``poll_after`` is the backend's hint, in seconds, for the first poll."""

    id: str
    data: dict[str, Any] = field(default_factory=dict)
    poll_after: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "data": self.data}


@dataclass(frozen=True, slots=True)
class Pending:
    """A polled job that is still running: when to look again (seconds, the backend's
    hint; else the scheduler's backoff) and progress to forward, such as a percentage."""

    retry_after: float | None = None
    progress: dict[str, Any] | None = None


class Provider(abc.ABC):
    """Subclass, implement :meth:`run`, and register with ``@register_provider("name")``."""

    kinds: ClassVar[frozenset[str] | None] = None  # None: accepts any kind
    # Numbers of a task's params this provider reads itself, with their ranges (least,
    # most, whole): checked at submit, beside params.COMMON, so a request with one out of
    # range is a 400 and stores nothing.
    param_bounds: ClassVar[Mapping[str, Bounds]] = {}

    def __init__(self, route: Route) -> None:
        self.route = route

    @abc.abstractmethod
    async def run(self, call: Call) -> Result | Job: ...

    async def poll(self, call: Call, job: Job) -> Result | Pending:
        """The state of a job that ``run`` returned: a Result when done, else Pending."""
        raise NotImplementedError(f"{type(self).__name__} returned a job but cannot poll")

    async def cancel_job(self, call: Call, job: Job) -> None:  # noqa: B027 - optional hook
        """Cancel the backend's job, where the backend allows it (best effort)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass
