"""Natural batching: one flush at a time, everything queued meanwhile goes in the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from taskgate.batching import Batcher


class Sink:
    """A flush that records its batches and can be held open until released."""

    def __init__(self, hold: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        self.started.set()
        await self.release.wait()
        return [self.result(i) for i in items]

    def result(self, item: int) -> int | BaseException:
        return item * 10


async def submit_all(batcher: Batcher[int, int], items: Sequence[int]) -> list[asyncio.Task[int]]:
    tasks = [asyncio.create_task(batcher.submit(i)) for i in items]
    await asyncio.sleep(0)  # let every submit enqueue its item
    return tasks


async def test_lone_item_is_flushed_at_once() -> None:
    sink = Sink()
    batcher: Batcher[int, int] = Batcher(sink)
    assert await asyncio.wait_for(batcher.submit(7), timeout=0.5) == 70
    assert sink.batches == [[7]]


async def test_items_queued_during_a_flush_share_the_next_one() -> None:
    sink = Sink(hold=True)
    batcher: Batcher[int, int] = Batcher(sink)
    first = await submit_all(batcher, [1])
    await sink.started.wait()
    rest = await submit_all(batcher, [2, 3, 4, 5])
    assert sink.batches == [[1]]  # nothing else starts while the first flush runs
    sink.release.set()
    assert await asyncio.gather(*first, *rest) == [10, 20, 30, 40, 50]
    assert sink.batches == [[1], [2, 3, 4, 5]]


async def test_max_batch_splits_a_backlog() -> None:
    sink = Sink(hold=True)
    batcher: Batcher[int, int] = Batcher(sink, max_batch=2)
    tasks = await submit_all(batcher, [1])
    await sink.started.wait()
    tasks += await submit_all(batcher, [2, 3, 4, 5, 6])
    sink.release.set()
    assert await asyncio.gather(*tasks) == [10, 20, 30, 40, 50, 60]
    assert sink.batches == [[1], [2, 3], [4, 5], [6]]


class PickySink(Sink):
    def result(self, item: int) -> int | BaseException:
        return ValueError(f"bad item {item}") if item % 2 else item * 10


async def test_per_item_exception_reaches_only_its_caller() -> None:
    sink = PickySink()
    batcher: Batcher[int, int] = Batcher(sink)
    tasks = await submit_all(batcher, [2, 3, 4])
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == 20 and results[2] == 40
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad item 3"
    assert sink.batches == [[2, 3, 4]]


async def test_a_failed_shared_write_is_retried_item_by_item() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def flush(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:
            await gate.wait()
            raise RuntimeError("one bad row spoils the transaction")
        if list(items) == [2]:
            raise RuntimeError("bad item 2")
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(flush)
    first = await submit_all(batcher, [1, 2, 3])
    later = await submit_all(batcher, [4])  # queued behind the failing flush
    gate.set()
    assert await first[0] == 10 and await first[2] == 30
    with pytest.raises(RuntimeError, match="bad item 2"):  # only its own caller fails
        await first[1]
    assert await later[0] == 40  # the batcher carries on after a failed flush
    assert batches == [[1, 2, 3], [1], [2], [3], [4]]


async def test_cancelled_caller_does_not_disturb_its_batch() -> None:
    sink = Sink(hold=True)
    batcher: Batcher[int, int] = Batcher(sink)
    tasks = await submit_all(batcher, [1, 2, 3])
    await sink.started.wait()
    tasks[1].cancel()
    await asyncio.sleep(0)
    sink.release.set()
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=1)
    assert done[0] == 10 and done[2] == 30
    assert tasks[1].cancelled()


async def test_cancelled_caller_in_a_failed_flush_leaves_the_rest_informed() -> None:
    gate = asyncio.Event()

    async def flush(items: Sequence[int]) -> list[int]:
        await gate.wait()
        raise RuntimeError("lost connection")

    batcher: Batcher[int, int] = Batcher(flush)
    tasks = await submit_all(batcher, [1, 2, 3])
    await asyncio.sleep(0)
    tasks[0].cancel()
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=1)
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(r, RuntimeError) for r in results[1:])
    await asyncio.wait_for(batcher.drain(), timeout=1)


async def test_drain_waits_for_everything_submitted() -> None:
    sink = Sink(hold=True)
    batcher: Batcher[int, int] = Batcher(sink)
    tasks = await submit_all(batcher, [1])
    await sink.started.wait()
    tasks += await submit_all(batcher, [2, 3])
    drain = asyncio.create_task(batcher.drain())
    await asyncio.sleep(0.01)
    assert not drain.done()  # the flush is still held
    sink.release.set()
    await asyncio.wait_for(drain, timeout=1)
    assert all(t.done() for t in tasks)
    assert sink.batches == [[1], [2, 3]]


async def test_drain_with_nothing_pending_returns_at_once() -> None:
    batcher: Batcher[int, int] = Batcher(Sink())
    await asyncio.wait_for(batcher.drain(), timeout=0.5)
