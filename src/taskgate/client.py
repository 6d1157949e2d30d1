"""Python client for taskgate's native API, sync (:class:`Client`) and async
(:class:`AsyncClient`). Both build the same requests from :class:`_Requests`."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson

DEFAULT_URL = "http://127.0.0.1:8000"
LONG_POLL = 60.0  # seconds per wait request; the server caps it at 300


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        self.message = str(err.get("message", body))
        kind = f" {err['type']}" if err.get("type") else ""
        super().__init__(f"{status}{kind}: {self.message}")
        self.status = status
        self.body = body
        self.type = err.get("type")


class _Requests:
    """Method, path and arguments of each call, shared by both clients."""

    @staticmethod
    def submit(
        kind: str,
        model: str,
        input: Any,
        params: dict[str, Any] | None = None,
        priority: str = "default",
        timeout: float | None = None,
        queue_timeout: float | None = None,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
    ) -> tuple[str, str, dict[str, Any]]:
        body: dict[str, Any] = {"kind": kind, "model": model, "input": input, "priority": priority}
        optional = {
            "params": params,
            "timeout": timeout,
            "queue_timeout": queue_timeout,
            "idempotency_key": idempotency_key,
            "webhook_url": webhook_url,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return "POST", "/v1/tasks", {"json": body}

    @staticmethod
    def get(task_id: str, wait: float = 0) -> tuple[str, str, dict[str, Any]]:
        params = {"wait": wait} if wait else {}
        return "GET", f"/v1/tasks/{task_id}", {"params": params, "timeout": wait + 30}

    @staticmethod
    def cancel(task_id: str) -> tuple[str, str, dict[str, Any]]:
        return "DELETE", f"/v1/tasks/{task_id}", {}

    @staticmethod
    def list(**filters: Any) -> tuple[str, str, dict[str, Any]]:
        return "GET", "/v1/tasks", {"params": {k: v for k, v in filters.items() if v is not None}}

    @staticmethod
    def logs(task_id: str) -> tuple[str, str, dict[str, Any]]:
        return "GET", f"/v1/tasks/{task_id}/logs", {}

    @staticmethod
    def stats() -> tuple[str, str, dict[str, Any]]:
        return "GET", "/v1/stats", {}

    @staticmethod
    def purge(
        older_than: str | float | None = None,
        dry_run: bool = False,
        tenant: str | None = None,
        before: str | float | None = None,
    ) -> tuple[str, str, dict[str, Any]]:
        body = {"older_than": older_than, "before": before, "tenant": tenant}
        body = {k: v for k, v in body.items() if v is not None}
        # a purge of a long backlog takes as long as it takes
        return "POST", "/v1/admin/purge", {"json": {**body, "dry_run": dry_run}, "timeout": None}

    @staticmethod
    def usage(
        group_by: str = "tenant",
        from_: str | None = None,
        to: str | None = None,
        tenant: str | None = None,
    ) -> tuple[str, str, dict[str, Any]]:
        params = {"group_by": group_by, "from": from_, "to": to, "tenant": tenant}
        return "GET", "/v1/usage", {"params": {k: v for k, v in params.items() if v is not None}}

    @staticmethod
    def set_key_limits(key_id: str, limits: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        return "PATCH", f"/v1/keys/{key_id}", {"json": {"limits": limits}}

    @staticmethod
    def reload() -> tuple[str, str, dict[str, Any]]:
        return "POST", "/v1/admin/reload", {}

    @staticmethod
    def instances(route: str) -> tuple[str, str, dict[str, Any]]:
        return "GET", f"/v1/routes/{quote(route, safe='')}/instances", {}

    @staticmethod
    def register_instance(route: str, name: str, **fields: Any) -> tuple[str, str, dict[str, Any]]:
        body = {"name": name, **{k: v for k, v in fields.items() if v is not None}}
        return "POST", f"/v1/routes/{quote(route, safe='')}/instances", {"json": body}

    @staticmethod
    def heartbeat(route: str, name: str) -> tuple[str, str, dict[str, Any]]:
        path = f"/v1/routes/{quote(route, safe='')}/instances/{quote(name, safe='')}/heartbeat"
        return "POST", path, {}

    @staticmethod
    def remove_instance(route: str, name: str) -> tuple[str, str, dict[str, Any]]:
        return "DELETE", f"/v1/routes/{quote(route, safe='')}/instances/{quote(name, safe='')}", {}


def verify_webhook(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether a webhook request really comes from taskgate, for a receiver to check before
    it trusts the event. ``body`` is the raw request body (before any JSON parsing),
    ``timestamp`` and ``signature`` the ``X-Taskgate-Timestamp`` and ``X-Taskgate-Signature``
    headers, ``secret`` the tenant's (``GET /v1/webhooks/secret``). A timestamp more than
    ``tolerance`` seconds away from ``now`` is refused, so a captured request cannot be
    replayed later."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    given = [p.strip()[3:] for p in signature.split(",") if p.strip().startswith("v1=")]
    return any(hmac.compare_digest(g, expected) for g in given)


def _check(resp: httpx.Response) -> Any:
    try:
        body = orjson.loads(resp.content) if resp.content else None
    except orjson.JSONDecodeError:  # not taskgate (a proxy's error page, another server)
        text = " ".join(resp.text.split())[:120]
        raise ApiError(resp.status_code, f"not a taskgate answer: {text!r}") from None
    if resp.status_code >= 400:
        raise ApiError(resp.status_code, body)
    return body


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _parse_sse(lines: list[str]) -> tuple[str, Any]:
    event, data = "message", []
    for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return event, orjson.loads("\n".join(data)) if data else None


class Client:
    def __init__(self, url: str = DEFAULT_URL, key: str | None = None, timeout: float = 30) -> None:
        self._http = httpx.Client(base_url=url, headers=_headers(key), timeout=timeout)

    def _call(self, spec: tuple[str, str, dict[str, Any]]) -> Any:
        method, path, kw = spec
        return _check(self._http.request(method, path, **kw))

    def submit(self, kind: str, model: str, input: Any, **kw: Any) -> dict[str, Any]:
        return self._call(_Requests.submit(kind, model, input, **kw))

    def get(self, task_id: str, wait: float = 0) -> dict[str, Any]:
        return self._call(_Requests.get(task_id, wait))

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = LONG_POLL if end is None else max(0.0, min(LONG_POLL, end - time.monotonic()))
            task = self.get(task_id, wait=left)
            if task["finished_at"] or (end is not None and time.monotonic() >= end):
                return task

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self._call(_Requests.cancel(task_id))

    def list(self, **filters: Any) -> dict[str, Any]:
        return self._call(_Requests.list(**filters))

    def logs(self, task_id: str) -> dict[str, Any]:
        """The task's own log: ``{"task_id", "entries"}``."""
        return self._call(_Requests.logs(task_id))

    def stats(self) -> dict[str, Any]:
        """The queue in numbers (admin keys)."""
        return self._call(_Requests.stats())

    def call(self, method: str, path: str, **kw: Any) -> Any:
        """Any other call of the native API (``kw`` as for httpx: ``json``, ``params``): its
        JSON answer, or :class:`ApiError`."""
        return self._call((method, path, kw))

    def purge(self, older_than: str | float | None = None, **kw: Any) -> dict[str, Any]:
        """Purge what ended ``older_than`` ago (``7d``, ``12h``, seconds; None: as configured;
        ``before=`` a time instead), of every tenant or ``tenant=``; ``dry_run=True`` only
        counts. Answers the counts and the cutoffs (admin keys)."""
        return self._call(_Requests.purge(older_than, **kw))

    def usage(self, group_by: str = "tenant", **range_: Any) -> dict[str, Any]:
        """Tokens and cost by tenant, key, model or day (``from_``, ``to``: ISO 8601 times;
        ``tenant``: one tenant's, for admin keys)."""
        return self._call(_Requests.usage(group_by, **range_))

    def set_key_limits(self, key_id: str, **limits: Any) -> dict[str, Any]:
        """Change a key's limits (admin keys): ``requests_per_minute``, ``tokens_per_day``,
        ``cost_per_month``; None lifts one, one not named stays."""
        return self._call(_Requests.set_key_limits(key_id, limits))

    def reload(self) -> dict[str, Any]:
        """Have every process read its config file again (admin keys): what changed."""
        return self._call(_Requests.reload())

    def instances(self, route: str) -> dict[str, Any]:
        """A route's instances, configured and registered (admin keys)."""
        return self._call(_Requests.instances(route))

    def register_instance(self, route: str, name: str, **fields: Any) -> dict[str, Any]:
        """Add (or refresh) a backend instance of a route: ``endpoint``,
        ``max_concurrency``, ``weight``, ``secret_env``, ``options``, ``ttl``, ... (admin)."""
        return self._call(_Requests.register_instance(route, name, **fields))

    def heartbeat(self, route: str, name: str) -> dict[str, Any]:
        """Keep a registered instance for another ``ttl``."""
        return self._call(_Requests.heartbeat(route, name))

    def remove_instance(self, route: str, name: str) -> dict[str, Any]:
        return self._call(_Requests.remove_instance(route, name))

    def events(self, task_id: str) -> Iterator[tuple[str, Any]]:
        """Server-sent events of a task until it ends: (event, data) pairs."""
        with self._http.stream("GET", f"/v1/tasks/{task_id}/events", timeout=None) as resp:
            if resp.status_code >= 400:
                resp.read()
                _check(resp)
            lines: list[str] = []
            for line in resp.iter_lines():
                if line:
                    lines.append(line)
                elif lines:
                    yield _parse_sse(lines)
                    lines = []

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncClient:
    def __init__(self, url: str = DEFAULT_URL, key: str | None = None, timeout: float = 30) -> None:
        self._http = httpx.AsyncClient(base_url=url, headers=_headers(key), timeout=timeout)

    async def _call(self, spec: tuple[str, str, dict[str, Any]]) -> Any:
        method, path, kw = spec
        return _check(await self._http.request(method, path, **kw))

    async def submit(self, kind: str, model: str, input: Any, **kw: Any) -> dict[str, Any]:
        return await self._call(_Requests.submit(kind, model, input, **kw))

    async def get(self, task_id: str, wait: float = 0) -> dict[str, Any]:
        return await self._call(_Requests.get(task_id, wait))

    async def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = LONG_POLL if end is None else max(0.0, min(LONG_POLL, end - time.monotonic()))
            task = await self.get(task_id, wait=left)
            if task["finished_at"] or (end is not None and time.monotonic() >= end):
                return task

    async def cancel(self, task_id: str) -> dict[str, Any]:
        return await self._call(_Requests.cancel(task_id))

    async def list(self, **filters: Any) -> dict[str, Any]:
        return await self._call(_Requests.list(**filters))

    async def logs(self, task_id: str) -> dict[str, Any]:
        return await self._call(_Requests.logs(task_id))

    async def stats(self) -> dict[str, Any]:
        return await self._call(_Requests.stats())

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        return await self._call((method, path, kw))

    async def purge(self, older_than: str | float | None = None, **kw: Any) -> dict[str, Any]:
        return await self._call(_Requests.purge(older_than, **kw))

    async def usage(self, group_by: str = "tenant", **range_: Any) -> dict[str, Any]:
        return await self._call(_Requests.usage(group_by, **range_))

    async def set_key_limits(self, key_id: str, **limits: Any) -> dict[str, Any]:
        return await self._call(_Requests.set_key_limits(key_id, limits))

    async def reload(self) -> dict[str, Any]:
        return await self._call(_Requests.reload())

    async def instances(self, route: str) -> dict[str, Any]:
        return await self._call(_Requests.instances(route))

    async def register_instance(self, route: str, name: str, **fields: Any) -> dict[str, Any]:
        return await self._call(_Requests.register_instance(route, name, **fields))

    async def heartbeat(self, route: str, name: str) -> dict[str, Any]:
        return await self._call(_Requests.heartbeat(route, name))

    async def remove_instance(self, route: str, name: str) -> dict[str, Any]:
        return await self._call(_Requests.remove_instance(route, name))

    async def events(self, task_id: str) -> AsyncIterator[tuple[str, Any]]:
        async with self._http.stream("GET", f"/v1/tasks/{task_id}/events", timeout=None) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                _check(resp)
            lines: list[str] = []
            async for line in resp.aiter_lines():
                if line:
                    lines.append(line)
                elif lines:
                    yield _parse_sse(lines)
                    lines = []

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
