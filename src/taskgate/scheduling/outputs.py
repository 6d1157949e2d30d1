"""What a provider's result becomes when its call ends: scrubbed of the call's secret, with
the files it returned saved to file storage and listed by id."""

from __future__ import annotations

import base64
import contextlib
from typing import Any

from taskgate.files import Files, file_json
from taskgate.models import Task
from taskgate.providers import Call, Result, redact

INLINE_MAX = 8 << 20  # return_base64 inlines files up to this size; larger ones: by url


async def ended(call: Call, result: Result) -> Result:
    """The result of a call that has ended, as the store keeps it: JSON (else TypeError),
    without the call's secret (a backend may echo the key it was sent); and the progress
    text that the call's emit held back (a possible start of the secret) sent."""
    if isinstance(call.emit, redact.Progress):
        await call.emit.flush()
    return redact.scrub_result(result, call)


async def keep_outputs(files: Files, task: Task, result: Result) -> dict[str, Any]:
    """The result as stored: files the provider returned are saved and listed by id (with
    their bytes inline as base64 too when the task's ``return_base64`` asks). All or none:
    a file that fails to save removes those saved before it, so a try again saves them all."""
    out = result.as_dict()
    if result.files:
        inline = bool(task.params.get("return_base64"))
        out["files"] = []
        try:
            for f in result.files:
                saved = await files.save(task.tenant, f.data, f.content_type, f.name, task.id)
                entry = file_json(saved)
                if inline and len(f.data) <= INLINE_MAX:
                    entry["b64_json"] = base64.b64encode(f.data).decode()
                out["files"].append(entry)
        except BaseException:
            with contextlib.suppress(Exception):
                await files.discard([entry["id"] for entry in out["files"]])
            raise
    return out
