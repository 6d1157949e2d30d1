"""An :class:`asyncio.Event` that tells when a coroutine starts waiting on it: a test can then
wake that coroutine and cancel it in the same turn of the loop."""

from __future__ import annotations

import asyncio
from typing import Literal


class Entered(asyncio.Event):
    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()  # set once something waits on this event

    async def wait(self) -> Literal[True]:
        self.entered.set()
        return await super().wait()
