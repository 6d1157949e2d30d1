"""Natural batching (group commit): callers hand in one item each and await its result; one
flusher writes everything that queued up while the previous write was running.

At low load a lone item is written at once, adding no latency; under load many items share one
transaction and one commit. Each item gets its own result or exception: when a shared write
fails, every item is written again on its own, so a bad item fails only its own caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# A flush returns one result per item, or an exception instance for an item that failed.
Flush = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]


class Batcher(Generic[T, R]):
    def __init__(self, flush: Flush[T, R], max_batch: int = 500) -> None:
        self._flush = flush
        self._max = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                await self._write(batch)
        except BaseException as exc:  # cancelled: nobody is left to write what still waits
            _fail(self._queue, exc)
            self._queue = []
            raise
        finally:
            self._runner = None

    async def _write(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"flush gave {len(results)} results for {len(batch)} items")
        except Exception as exc:
            if len(batch) > 1:  # one bad item must not fail its neighbours: write each alone
                for one in batch:
                    await self._write([one])
            else:
                _fail(batch, exc)
            return
        except BaseException as exc:  # cancelled: every caller hears it
            _fail(batch, exc)
            raise
        for (_, fut), res in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)

    async def drain(self) -> None:
        """Wait until everything submitted so far is written."""
        while self._runner is not None:
            await asyncio.shield(self._runner)


def _fail(batch: list[tuple[Any, asyncio.Future[Any]]], exc: BaseException) -> None:
    for _, fut in batch:
        if fut.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            fut.cancel()
        else:
            fut.set_exception(exc)
