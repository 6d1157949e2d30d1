"""``/docs`` and ``/openapi.json``: the page and everything it loads come from the server
itself (it works offline); exactly the operations that refuse a request without a key
declare the bearer scheme (so the page's Authorize button sends the key where it is
needed); and real answers match the schemas their operations declare.

In process, over the real app with its lifespan (SQLite, the mock provider), so it stays
fast. What a browser test of ``/docs`` should add: the page renders the operations (not
Swagger UI's "Unable to render this definition"), no request leaves the origin and the
console shows no Content-Security-Policy violation, and after Authorize with a key
"Try it out" on ``GET /v1/tasks`` answers 200 (and 401 without it).
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import pytest
from fastapi.testclient import TestClient

from taskgate.api.app import create_app
from taskgate.config import Settings
from taskgate.store import from_url

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def settings(tmp_path: Path, **more: Any) -> Settings:
    route = {
        "name": "m",
        "models": ["mock", "mock2"],
        "provider": "mock",
        "instances": [{"name": "i"}],
    }
    return Settings.model_validate(
        {
            "store_url": f"sqlite:///{tmp_path}/t.db",
            "files_url": f"file://{tmp_path}/files",
            "routes": [route],
            **more,
        }
    )


@pytest.fixture
def admin(conf: Settings) -> str:
    """An admin key made before the server starts (so it makes none of its own)."""

    async def make() -> str:
        store = from_url(conf.store_url)
        await store.open()
        try:
            return (await store.keys.create("ops", "", admin=True))[1]
        finally:
            await store.close()

    return asyncio.run(make())


@pytest.fixture
def conf(tmp_path: Path) -> Settings:
    return settings(tmp_path, webhooks={"allow_private": True})


@pytest.fixture
def client(conf: Settings, admin: str) -> Iterator[TestClient]:
    with TestClient(create_app(conf)) as c:
        yield c


# --- the page --------------------------------------------------------------------------------


class Links(HTMLParser):
    """The URLs a page loads: scripts, stylesheets and icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        url = named.get("src") if tag == "script" else named.get("href") if tag == "link" else None
        if url:
            self.urls.append(url)


def loaded_by(page: str) -> list[str]:
    links = Links()
    links.feed(page)
    return links.urls + re.findall(r"\burl: '([^']+)'", page)  # Swagger UI's document


def test_the_docs_page_and_all_it_loads_come_from_the_server(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "://" not in page.text  # no absolute URL at all: nothing names another origin
    urls = loaded_by(page.text)
    names = {urlsplit(u).path.rsplit("/", 1)[-1] for u in urls}
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png", "openapi.json"} <= names
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and parts.path.startswith("/"), url
        r = client.get(url)
        assert r.status_code == 200, url
        if parts.path == "/openapi.json":
            assert r.headers["content-type"] == "application/json"
            continue
        suffix = parts.path[parts.path.rfind(".") :]
        assert r.headers["content-type"].startswith(CONTENT_TYPES[suffix]), url
        assert "max-age=31536000" in r.headers["cache-control"]  # the URL names the version
    assert client.get("/redoc").status_code == 404  # dropped: ReDoc loads a logo from its CDN


def test_behind_a_prefix_every_url_of_the_page_carries_it(conf: Settings, admin: str) -> None:
    with TestClient(create_app(conf), root_path="/tg") as c:
        page = c.get("/tg/docs").text
        urls = loaded_by(page)
        assert urls and all(u.startswith("/tg/") for u in urls), urls
        assert all(c.get(u).status_code == 200 for u in urls)


# --- the bearer scheme -----------------------------------------------------------------------

KEYED = [{"bearer": []}]
KEY_OPTIONAL = [{}, {"bearer": []}]


@pytest.mark.parametrize("require_key", [False, True], ids=["open-metrics", "keyed-metrics"])
def test_the_operations_that_refuse_a_missing_key_and_only_they_need_the_bearer_scheme(
    tmp_path: Path, require_key: bool
) -> None:
    conf = settings(tmp_path, metrics={"require_key": require_key})
    with TestClient(create_app(conf)) as c:
        doc = c.get("/openapi.json").json()
        scheme = doc["components"]["securitySchemes"]["bearer"]
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        wrong, keyed = [], 0
        for path, operations in doc["paths"].items():
            url = re.sub(r"\{[^}]+\}", "x", path)
            for method, op in operations.items():
                r = c.request(method.upper(), url, json={})  # no key
                security = op.get("security")
                keyed += security == KEYED
                if (r.status_code == 401) != (security == KEYED):
                    wrong.append(f"{method.upper()} {path}: {r.status_code}, security {security}")
                if security == KEY_OPTIONAL:  # answers without one; a key sent must be good
                    bad = c.request(method.upper(), url, headers={"authorization": "Bearer x"})
                    assert bad.status_code == 401, path
        assert not wrong, "\n".join(wrong)
        assert keyed > 40  # the whole API was walked
        assert ("security" in doc["paths"]["/metrics"]["get"]) == require_key


# --- declared answers ------------------------------------------------------------------------


def strict(doc: dict[str, Any]) -> dict[str, Any]:
    """The document's schemas with no undeclared field allowed in the objects whose schema
    does not say (the document lets clients meet new fields; an error's details are open),
    so that a field a view sends and the schema leaves out fails here."""
    components = copy.deepcopy(doc["components"])

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                node.setdefault("additionalProperties", False)
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(components["schemas"])
    return components


class Conformance:
    """Checks answers against the schema their operation declares for their status."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.doc = client.get("/openapi.json").json()
        self.components = strict(self.doc)
        self.checked: set[tuple[str, str]] = set()

    def call(self, method: str, path: str, key: str | None, status: int, **kwargs: Any) -> Any:
        """Call ``path`` (its template's ``{name}`` s filled from ``kwargs['ids']``)."""
        url = path.format(**kwargs.pop("ids", {}))
        headers = {"authorization": f"Bearer {key}"} if key else {}
        r = self.client.request(method, url, headers=headers, **kwargs)
        assert r.status_code == status, f"{method} {url}: {r.status_code} {r.text}"
        self.check(method, path, r)
        return r.json()

    def check(self, method: str, template: str, r: httpx.Response) -> None:
        answers = self.doc["paths"][template][method.lower()]["responses"]
        declared = answers.get(str(r.status_code)) or answers[f"{r.status_code // 100}XX"]
        schema = declared["content"]["application/json"]["schema"]
        assert schema, f"{method} {template} {r.status_code} declares no schema"
        jsonschema.validate(r.json(), {**schema, "components": self.components})
        self.checked.add((method, template))

    def declared(self) -> set[tuple[str, str]]:
        """The operations that declare the shape of a success."""
        return {
            (method.upper(), path)
            for path, operations in self.doc["paths"].items()
            for method, op in operations.items()
            for status, answer in op["responses"].items()
            if status.startswith("2")
            and answer.get("content", {}).get("application/json", {}).get("schema")
        }


def test_answers_match_the_schemas_their_operations_declare(client: TestClient, admin: str) -> None:
    api = Conformance(client)
    call = api.call
    made = call("POST", "/v1/keys", admin, 201, json={"tenant": "acme", "name": "docs"})
    key, ids = made["key"], {"key_id": made["id"]}
    call(
        "PATCH",
        "/v1/keys/{key_id}",
        admin,
        200,
        ids=ids,
        json={"limits": {"tokens_per_day": 10**6}},
    )
    call("GET", "/v1/keys", admin, 200)

    chat = {"id": call("POST", "/v1/conversations", key, 201, json={"title": "t"})["id"]}
    hook = "http://127.0.0.1:9/hook"  # nothing listens: its deliveries wait for a retry
    task = {"kind": "chat", "model": "mock", "input": "hi", "webhook_url": hook}
    once = {**task, "idempotency_key": "k1"}
    ids = {"task_id": call("POST", "/v1/tasks", key, 202, json=once)["id"]}
    call("POST", "/v1/tasks", key, 200, json=once)  # the same again: the earlier task
    call("POST", "/v1/tasks", key, 202, json={**task, "conversation_id": chat["id"]})
    done = call("GET", "/v1/tasks/{task_id}", key, 200, ids=ids, params={"wait": 20})
    assert done["status"] == "SUCCESS" and done["history"] and done["webhook"]
    call("GET", "/v1/tasks", key, 200)
    call("GET", "/v1/tasks/{task_id}/logs", key, 200, ids=ids)
    call("DELETE", "/v1/tasks/{task_id}", key, 200, ids=ids)
    failing = {**task, "params": {"mock_fail_attempts": 9, "mock_error": "invalid_input"}}
    failed = {"task_id": call("POST", "/v1/tasks", key, 202, json=failing)["id"]}
    ended = call("GET", "/v1/tasks/{task_id}", key, 200, ids=failed, params={"wait": 20})
    assert ended["status"] == "FAILED" and ended["error"]
    call("POST", "/v1/tasks/{task_id}/retry", admin, 200, ids=failed)

    batch = {"kind": "chat", "models": ["mock", "mock2"], "input": "hi", "webhook_url": hook}
    ids = {"batch_id": call("POST", "/v1/batches", key, 202, json=batch)["id"]}
    whole = call("GET", "/v1/batches/{batch_id}", key, 200, ids=ids, params={"wait": 20})
    assert whole["status"] == "SUCCESS" and whole["webhook"]
    call("DELETE", "/v1/batches/{batch_id}", key, 200, ids=ids)

    ids = {"conversation_id": chat["id"]}
    assert call("GET", "/v1/conversations/{conversation_id}", key, 200, ids=ids)["messages"]
    call("GET", "/v1/conversations/{conversation_id}/history", key, 200, ids=ids)
    call("GET", "/v1/conversations", key, 200)
    call("DELETE", "/v1/conversations/{conversation_id}", key, 200, ids=ids)

    # AI Task System's records answer in its shapes on the paths its API shares
    bearer = {"authorization": f"Bearer {key}"}
    sent = {"prompt": "hi", "model": "mock, mock2"}
    turn = api.client.post("/v1/chat/completions", json=sent, headers=bearer).json()
    ids = {"task_id": turn["task_ids"][0]}
    seen = call("GET", "/v1/tasks/{task_id}", key, 200, ids=ids, params={"wait": 20})
    assert seen["status"] == 1 and seen["response_text"] == "mock reply to: hi"
    ids = {"conversation_id": turn["conversation_id"]}
    told = call("GET", "/v1/conversations/{conversation_id}/history", key, 200, ids=ids)
    assert [m["role"] for m in told][:2] == ["user", "assistant"]
    listed = call("GET", "/v1/conversations", key, 200)
    assert listed["conversations"][0]["conversation_id"] == turn["conversation_id"]
    ids = {"batch_id": turn["batch_id"]}
    assert call("GET", "/v1/batches/{batch_id}", key, 200, ids=ids)["user_prompt"] == "hi"

    call("POST", "/v1/files", key, 201, files={"file": ("a.txt", b"hello", "text/plain")})
    call("GET", "/v1/webhooks/secret", key, 200)
    call("POST", "/v1/webhooks/secret/rotate", key, 200)
    call("GET", "/v1/models", key, 200)

    route = {"name": "m"}
    call("POST", "/v1/routes/{name}/pause", admin, 200, ids=route)
    ids = {"task_id": call("POST", "/v1/tasks", key, 202, json=task)["id"]}
    assert call("GET", "/v1/tasks/{task_id}", key, 200, ids=ids)["position"] == 1
    waiting = {"status": ["PENDING"]}
    assert call("POST", "/v1/tasks/cancel", admin, 200, json=waiting) == {"cancelled": 1}
    assert call("POST", "/v1/tasks/retry", admin, 200, json={"model": "mock"})["retried"]
    call("GET", "/v1/routes", admin, 200)
    call("POST", "/v1/routes/{name}/resume", admin, 200, ids=route)
    workers = call("GET", "/v1/workers", admin, 200)["data"]
    call("DELETE", "/v1/keys/{key_id}", admin, 200, ids={"key_id": made["id"]})

    # refusals, in each API's shape
    call("GET", "/v1/tasks/{task_id}", admin, 404, ids={"task_id": "nope"})
    problems = call("POST", "/v1/tasks", admin, 422, json={"kind": "chat"})["error"]["problems"]
    assert problems
    call("GET", "/v1/tasks", None, 401)
    call("POST", "/openai/v1/embeddings", None, 401, json={})
    call("GET", "/api/v1/tasks/{task_id}", None, 401, ids={"task_id": "x"})
    call("GET", "/api/v1/ai/tasks", None, 401)
    call("POST", "/v1/images/generations", None, 401, json={})

    # last: it stops this server's worker
    call("POST", "/v1/workers/{worker_id}/drain", admin, 200, ids={"worker_id": workers[0]["id"]})
    assert api.declared() <= api.checked, api.declared() - api.checked
