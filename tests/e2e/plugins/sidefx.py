"""A test provider with a visible side effect: each call that completes appends
``task_id attempt`` to the file named by the route option ``journal``."""

from __future__ import annotations

import asyncio
import os

from taskgate import Call, Provider, Result, register_provider


@register_provider("sidefx")
class SideEffectProvider(Provider):
    async def run(self, call: Call) -> Result:
        await asyncio.sleep(float(call.option("latency_ms", 0)) / 1000)
        with open(call.option("journal"), "a") as journal:
            journal.write(f"{call.task_id} {call.attempt}\n")
            journal.flush()
            os.fsync(journal.fileno())
        return Result({"done": call.task_id})
