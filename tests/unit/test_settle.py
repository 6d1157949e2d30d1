"""A started process's garbage collector: what it was made of is frozen, and it collects
less often (``services.settle``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from taskgate import services


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_freezes_what_exists_and_collects_less_often(restored_gc: None) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    services.settle()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == services.GC_THRESHOLD
    assert gc.get_threshold()[0] > 700  # CPython's default
