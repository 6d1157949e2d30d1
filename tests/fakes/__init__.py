"""Fakes of outside services that speak their real wire protocols, for tests.

Each fake is a :class:`LoopbackServer`: an aiohttp app on a free port of 127.0.0.1, used as
``async with Fake() as fake:`` in async tests, or ``with in_thread(Fake()) as fake:`` where the
test itself blocks (a taskgate server subprocess driven with sync httpx).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any, Self, TypeVar

from aiohttp import web


class LoopbackServer:
    """Lifecycle shared by the fakes; a subclass only adds its routes in :meth:`routes`."""

    port = 0
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


class Scripted:
    """Behaviours a test queues with ``fake.script(*modes)``, one taken by each request that
    follows (``next_mode()``); a request in ``hold`` waits (``held()``) until
    ``fake.release()``, which any thread may call. A fake lists its ``modes``, calls
    ``Scripted.__init__`` and, from its ``routes``, ``bind_loop()``."""

    modes: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self._modes: deque[str] = deque()
        self._released = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def script(self, *modes: str) -> None:
        unknown = set(modes) - self.modes
        if unknown:
            raise ValueError(f"unknown fake modes {sorted(unknown)}")
        self._modes.extend(modes)

    def next_mode(self) -> str | None:
        return self._modes.popleft() if self._modes else None

    def bind_loop(self) -> None:
        self._loop = asyncio.get_running_loop()

    def release(self) -> None:
        """Let requests in ``hold`` answer (callable from any thread)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._released.set)

    async def held(self) -> None:
        await self._released.wait()


F = TypeVar("F", bound=LoopbackServer)


@contextlib.contextmanager
def in_thread(fake: F) -> Iterator[F]:
    """Serve a fake from a thread with its own event loop, for tests that block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-server", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


__all__ = ["LoopbackServer", "Scripted", "in_thread"]
