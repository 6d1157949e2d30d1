"""Fakes of outside services that speak their real wire protocols, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Protocol, TypeVar


class Startable(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


F = TypeVar("F", bound=Startable)


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


__all__ = ["in_thread"]
