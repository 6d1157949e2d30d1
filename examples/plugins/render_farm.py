"""An example taskgate plugin: a provider for an in-house render farm that runs jobs.

The farm has a small HTTP API: ``POST /jobs {"prompt": ...}`` answers ``{"id": ...}``;
``GET /jobs/{id}`` answers ``{"state": "queued" | "running" | "done" | "failed", "progress",
"video_base64", "error"}``; ``DELETE /jobs/{id}`` cancels. Because a render takes minutes,
``run`` submits and returns a :class:`~taskgate.Job`; taskgate keeps the job id on the task,
frees the farm's slot, and calls ``poll`` with backoff until it returns a ``Result`` (after a
restart too, from the stored id). Retries, timeouts and failover are taskgate's business, not
the plugin's: it only converts the farm's answers into results and errors.

Use it by naming the module in the config (it must be importable, e.g. on PYTHONPATH)::

    plugins: [examples.plugins.render_farm]
    routes:
      - name: farm
        models: ["farm-*"]
        kinds: [video]
        provider: render_farm
        timeout: 3600                 # the whole job, polling included
        poll: {interval: 5, max_interval: 60}
        instances: [{name: farm1, endpoint: "http://render.internal:9000", max_concurrency: 4}]

or publish it in a package under the entry-point group ``taskgate.providers``::

    [project.entry-points."taskgate.providers"]
    render_farm = "my_company.render_farm:RenderFarm"
"""

from __future__ import annotations

import base64
from typing import Any

import aiohttp

from taskgate import errors
from taskgate.providers import Call, Job, OutputFile, Pending, Provider, Result, register_provider


@register_provider("render_farm")
class RenderFarm(Provider):
    kinds = frozenset({"video"})

    async def run(self, call: Call) -> Result | Job:
        prompt = call.input if isinstance(call.input, str) else call.input.get("prompt")
        reply = await self._request(call, "POST", "/jobs", {"prompt": prompt, **call.params})
        return Job(str(reply["id"]), poll_after=1.0)

    async def poll(self, call: Call, job: Job) -> Result | Pending:
        reply = await self._request(call, "GET", f"/jobs/{job.id}")
        if reply["state"] in ("queued", "running"):
            return Pending(progress={"percent": reply.get("progress", 0)})
        if reply["state"] == "failed":
            raise errors.InvalidInput(f"the farm failed job {job.id}: {reply.get('error')}")
        video = OutputFile(base64.b64decode(reply["video_base64"]), "video/mp4", "render.mp4")
        return Result({"frames": reply.get("frames")}, files=(video,))

    async def cancel_job(self, call: Call, job: Job) -> None:
        await self._request(call, "DELETE", f"/jobs/{job.id}")

    async def _request(
        self, call: Call, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One call to the farm, its failures turned into taskgate's errors."""
        url = f"{call.instance.endpoint}{path}"
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.request(method, url, json=body) as resp,
            ):
                if resp.status >= 400:
                    raise errors.from_http_status(resp.status, await resp.text())
                data: dict[str, Any] = await resp.json()
                return data
        except aiohttp.ClientError as exc:
            raise errors.ConnectionFailed(f"render farm unreachable: {exc}") from exc
