"""Direct access to a store's database for tests, through an engine of our own (not the
store's internals), so tests can look at what is really stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

R = TypeVar("R")


async def on_db(url: str, fn: Callable[[sa.Connection], R]) -> R:
    """Run ``fn(connection)`` in one transaction on the database at the store URL ``url``."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                return fn(conn)
        finally:
            engine.dispose()
    aengine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with aengine.begin() as aconn:
            return await aconn.run_sync(fn)
    finally:
        await aengine.dispose()
