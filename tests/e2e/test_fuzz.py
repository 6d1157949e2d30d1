"""A schema-driven fuzz of the whole HTTP API: schemathesis reads the running server's OpenAPI
description and sends a few generated requests, valid and invalid, to every operation with an
admin key. No answer may be a server error (schemathesis's ``not_a_server_error``).

The server is the real ``taskgate serve`` process (the e2e fixtures), used over HTTP: the
requests go through uvicorn's parsing and the body-size middleware as a client's do, the
scheduler runs in its own process with its own event loop, and a 5xx leaves its traceback in
the server's log, which the failure quotes. (In process, over ASGI, the app, its scheduler and
Hypothesis would share the test's thread and event loop.)

Each operation gets a Hypothesis test from ``APIOperation.as_strategy`` (schemathesis's API for
plain ``@given`` tests; its pytest loader ``from_fixture`` needs pytest < 9.2), positive and
negative, bounded so that it stays a unit of ``make test``: :data:`EXAMPLES` examples each,
derandomized (a failure repeats exactly), without shrinking or an example database. Every
operation runs, and every 5xx is reported together at the end.

One route takes every model name, so submits with any ``model`` are accepted and run (by the
mock, at once). Excluded or pinned, and why:

- ``GET /v1/tasks/{task_id}/events`` (server-sent events) streams until its task ends: on a
  task that waits, that is no fuzzing, only waiting. (A generated id is a 404 at once.)
- ``wait`` (``GET /v1/tasks/{id}``, ``GET /v1/batches/{id}``) is pinned to 1 s, for the same
  reason: a long-poll lasts up to 300 s. Its bounds are FastAPI's (``ge=0, le=300``).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup

from tests.e2e.conftest import Server, mock_route

EXAMPLES = 5  # per operation and generation mode
EXCLUDED = {("GET", "/v1/tasks/{task_id}/events")}
PINNED_QUERY = {"wait": 1}
# Valid bodies need values that only the server's state makes valid (a kind or task type it
# knows, a conversation that exists, a webhook it may call); random text almost never is.
# Positive cases get these, so that they reach the gateway, the store and the mock; every
# other field stays as generated.
CHAT = [{"role": "user", "content": "hi"}]
REPAIRS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/tasks"): {"kind": "chat", "conversation_id": None, "webhook_url": None},
    ("POST", "/v1/batches"): {"kind": "chat", "conversation_id": None, "webhook_url": None},
    ("POST", "/openai/v1/chat/completions"): {"messages": CHAT, "n": 1},
    ("POST", "/api/v1/tasks_json"): {"task_type": "text-generation", "callback": None},
    ("POST", "/api/v1/ai/{task_type}/task"): {"provider": "volcengine", "prompt": "hi"},
    ("POST", "/v1/images/generations"): {"conversation_id": None},
}
BOUNDED = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the request is reported as sent
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def fuzzed(make_server: Any) -> Server:
    server: Server = make_server([mock_route("any", ["*"])], max_body_bytes=1_000_000)
    server.start()
    return server


def operations(server: Server) -> list[Any]:
    config = schemathesis.Config.from_dict({"base-url": server.url, "request-timeout": 30})
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)
    found = [result.ok() for result in schema.get_all_operations()]
    return [op for op in found if (op.method.upper(), op.path) not in EXCLUDED]


def cases(operation: Any, mode: GenerationMode, admin: str) -> Any:
    """The strategy of ``operation``'s requests: with the admin key, ``wait`` pinned, and
    positive bodies repaired (:data:`REPAIRS`)."""
    pinned = {k: v for k, v in PINNED_QUERY.items() if k in operation.query}
    strategy = operation.as_strategy(
        mode, headers={"Authorization": f"Bearer {admin}"}, query=pinned or None
    )
    repair = REPAIRS.get((operation.method.upper(), operation.path))
    if repair and mode is GenerationMode.POSITIVE:
        strategy = strategy.map(lambda case: repaired(case, repair))
    return strategy


def server_errors(operation: Any, mode: GenerationMode, admin: str, server: Server) -> list[str]:
    """The 5xx answers to ``operation``'s generated requests: one line each, with the call."""
    found: list[str] = []

    @BOUNDED
    @given(case=cases(operation, mode, admin))
    def probe(case: Any) -> None:
        response = case.call(base_url=server.url, timeout=30)
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except FailureGroup:  # the check failed: a 5xx
            found.append(f"{response.status_code} {case.as_curl_command()}")

    try:
        probe()
    except Unsatisfiable:  # nothing to break: no parameters, no body (negative mode)
        assert mode is GenerationMode.NEGATIVE, operation.label
    return found


def repaired(case: Any, fields: dict[str, Any]) -> Any:
    """The case with ``fields`` set in its JSON body (a field set to None is removed)."""
    if isinstance(case.body, dict):
        for name, value in fields.items():
            if value is None:
                case.body.pop(name, None)
            else:
                case.body[name] = value
    return case


@pytest.mark.timeout(120)
def test_no_operation_answers_a_server_error(fuzzed: Server) -> None:
    admin = fuzzed.create_key("fuzz", admin=True)
    ops = operations(fuzzed)
    assert len(ops) > 30, [op.label for op in ops]  # the whole API, not an empty schema
    errors = [
        f"{op.label} ({mode.value}): {line}"
        for op in ops
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for line in server_errors(op, mode, admin, fuzzed)
    ]
    log = fuzzed.log.read_text(errors="replace")[-6000:] if errors else ""
    assert not errors, "\n".join(errors) + "\n--- server log ---\n" + log


# --- what fuzzing found, pinned ------------------------------------------------------------


@pytest.mark.parametrize("value", ["42", "-1.5", "true", '"42"'])
def test_an_input_of_any_json_type_is_read_back_and_run(fuzzed: Server, value: str) -> None:
    """A task's ``input`` may be any JSON value (one server each: a value the store cannot
    read back poisons it). Found by the fuzz above: a bare number stored in SQLite's JSON
    column becomes a number (the column's NUMERIC affinity), which the JSON type cannot
    decode; then every read of the task answers 500 and every claim of the scheduler fails
    on it, so no task of any route runs again."""
    with fuzzed.client(fuzzed.create_key("acme")) as c:
        body = f'{{"kind": "chat", "model": "mock", "input": {value}}}'
        r = c.post("/v1/tasks", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 202, r.text
        done = c.get(f"/v1/tasks/{r.json()['id']}", params={"wait": 20})
        assert done.status_code == 200, done.text
        assert done.json()["input"] == orjson.loads(value)
        assert done.json()["status"] == "SUCCESS", done.json()
        assert c.get("/v1/tasks").status_code == 200
