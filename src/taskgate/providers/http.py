"""The ``http`` provider: one JSON request to an in-house model server, described in YAML.

    routes:
      - name: ranker
        models: ["ranker-*"]
        provider: http
        instances: [{name: r1, endpoint: "http://10.0.0.7:9000", secret_env: RANKER_KEY}]
        options:
          path: /v1/rank
          headers: {Authorization: "Bearer {secret}"}
          body: {model: "{{model}}", query: "{{input.query}}", top_k: "{{params.top_k}}"}
          result_path: data.0
          usage_path: meta.usage

Options (route or instance; the instance wins):

``path``
    appended to the instance's ``endpoint`` (default ``""``).
``method``
    the HTTP method (default ``POST``).
``headers``
    a mapping of header names to strings; ``{secret}`` in a value becomes the instance's secret.
    ``Content-Type: application/json`` is sent unless set here.
``body``
    a JSON template: any JSON value in which a string that is exactly ``"{{input}}"``,
    ``"{{params}}"``, ``"{{model}}"``, ``"{{kind}}"``, ``"{{task_id}}"``, ``"{{input.FIELD}}"``
    or ``"{{params.FIELD}}"`` is replaced by that value, keeping its JSON type (FIELD may be a
    dotted path, as below). Other strings are sent as they are. Default:
    ``{"model": "{{model}}", "input": "{{input}}", "params": "{{params}}"}``; ``null`` sends no
    body. An unknown placeholder is refused when the route is built; an input or params field
    the task lacks fails the task with ``InvalidInput``.
``result_path``
    a dotted path with integer list indices (``choices.0.message.content``) picking the output
    out of the JSON reply (default: the whole reply). A mapping is the output as is; anything
    else becomes ``{"value": ...}``.
``usage_path``
    optional, same syntax; it must lead to a mapping, which becomes the result's usage.
``read_timeout``
    seconds the server may stay silent before ``ProviderTimeout`` (default: the route's timeout).

HTTP and aiohttp errors become :mod:`taskgate.errors` here, with the secret blanked out of any
text that goes into them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from taskgate import errors
from taskgate.config import Route
from taskgate.providers.base import Call, Result
from taskgate.providers.redact import scrub
from taskgate.providers.registry import register_provider
from taskgate.providers.web import WebProvider, bad_response, retry_after, snippet

PLACEHOLDERS = frozenset({"input", "params", "model", "kind", "task_id"})
FIELD_PLACEHOLDERS = frozenset({"input", "params"})  # the ones that take ``.FIELD``
DEFAULT_BODY: dict[str, Any] = {"model": "{{model}}", "input": "{{input}}", "params": "{{params}}"}

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_UNSET = object()

Resolve = Callable[[str, str], Any]  # (name, field path or "") -> value


class PathError(LookupError):
    """A dotted path that does not lead anywhere in the data."""


# --- pure helpers ------------------------------------------------------------------------


def lookup_path(data: Any, path: str) -> Any:
    """Follow ``a.b.0.c`` through mappings and lists; ``""`` is ``data`` itself."""
    if not path:
        return data
    current = data
    walked: list[str] = []
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif (
            isinstance(current, list)
            and _is_index(part)
            and -len(current) <= int(part) < len(current)
        ):
            current = current[int(part)]
        else:
            where = ".".join(walked) or "the top"
            raise PathError(f"path {path!r}: no {part!r} under {where}")
        walked.append(part)
    return current


def _is_index(part: str) -> bool:
    return part.removeprefix("-").isdigit()


def parse_placeholder(text: str) -> tuple[str, str] | None:
    """``("input", "a.b")`` for ``"{{input.a.b}}"``; None if ``text`` is not a placeholder.

    Raises ValueError for ``{{...}}`` naming something that is not a placeholder.
    """
    match = _PLACEHOLDER.fullmatch(text)
    if match is None:
        return None
    name, _, field = match.group(1).partition(".")
    if name not in PLACEHOLDERS or (field and name not in FIELD_PLACEHOLDERS):
        known = ", ".join(sorted(PLACEHOLDERS | {f"{n}.FIELD" for n in FIELD_PLACEHOLDERS}))
        raise ValueError(f"unknown placeholder {text!r}; known: {known}")
    if "." in match.group(1) and (not field or "" in field.split(".")):
        raise ValueError(f"placeholder {text!r} has an empty field name")
    return name, field


def render(template: Any, resolve: Resolve) -> Any:
    """A copy of ``template`` with every placeholder string replaced by ``resolve(name, field)``.

    Only values are rendered, never mapping keys; strings that merely contain ``{{...}}``
    among other text are left as they are.
    """
    if isinstance(template, str):
        parsed = parse_placeholder(template)
        return template if parsed is None else resolve(*parsed)
    if isinstance(template, Mapping):
        return {key: render(value, resolve) for key, value in template.items()}
    if isinstance(template, list | tuple):
        return [render(value, resolve) for value in template]
    return template


def resolver(values: Mapping[str, Any]) -> Resolve:
    """Resolve placeholders from ``values``; a missing field raises :class:`PathError`."""

    def resolve(name: str, field: str) -> Any:
        return lookup_path(values[name], field)

    return resolve


def validate_template(template: Any) -> None:
    """Raise ValueError if ``template`` has an unknown placeholder (a dry render)."""
    render(template, lambda name, field: None)


def validate_path(path: Any, option: str) -> None:
    if path is None:
        return
    if not isinstance(path, str) or (path and "" in path.split(".")):
        raise ValueError(f"option {option!r} must be a dotted path like 'a.0.b', not {path!r}")


# --- the provider ------------------------------------------------------------------------


@register_provider("http")
class HttpProvider(WebProvider):
    kinds = None  # the server decides what it can do

    def __init__(self, route: Route) -> None:
        super().__init__(route)
        for instance in route.instances:
            if not instance.endpoint:
                raise ValueError(
                    f"route {route.name!r}: http instance {instance.name!r} needs an endpoint"
                )
            try:
                validate_options({**route.options, **instance.options})
            except ValueError as exc:
                raise ValueError(
                    f"route {route.name!r}, instance {instance.name!r}: {exc}"
                ) from exc

    async def run(self, call: Call) -> Result:
        url = str(call.instance.endpoint).rstrip("/") + str(call.option("path", "") or "")
        method = str(call.option("method", "POST")).upper()
        body = request_body(call)
        data = None if body is _UNSET else orjson.dumps(body)
        async with self._request(call, method, url, data, request_headers(call)) as resp:
            raw = await resp.read()
        return reply_result(raw, call)

    async def http_error(self, resp: aiohttp.ClientResponse, call: Call) -> errors.ProviderError:
        text = await resp.text(errors="replace")
        message, code = error_detail(text)
        return errors.from_http_status(
            resp.status,
            snippet(message, call),
            provider_code=None if code is None else scrub(code, call),
            retry_after=retry_after(resp.headers.get("Retry-After")),
        )


def validate_options(options: Mapping[str, Any]) -> None:
    """Refuse options that could never work, when the route is built."""
    for name in ("path", "method"):
        if not isinstance(options.get(name, ""), str):
            raise ValueError(f"option {name!r} must be a string")
    headers = options.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValueError("option 'headers' must map header names to strings")
    validate_template(options.get("body", DEFAULT_BODY))
    validate_path(options.get("result_path"), "result_path")
    validate_path(options.get("usage_path"), "usage_path")


# --- requests ----------------------------------------------------------------------------


def request_body(call: Call) -> Any:
    """The rendered body, or ``_UNSET`` when the body option is null."""
    template = call.option("body", DEFAULT_BODY)
    if template is None:
        return _UNSET
    values = {
        "input": call.input,
        "params": call.params,
        "model": call.model,
        "kind": call.kind,
        "task_id": call.task_id,
    }
    try:
        return render(template, resolver(values))
    except PathError as exc:
        raise errors.InvalidInput(f"the body template needs a field the task lacks: {exc}") from exc


def request_headers(call: Call) -> dict[str, str]:
    configured: Mapping[str, str] = call.option("headers") or {}
    secret = call.instance.secret.get_secret_value() if call.instance.secret else None
    out = {"Content-Type": "application/json", "Accept": "application/json"}
    for name in [n for n in out if n.lower() in {k.lower() for k in configured}]:
        del out[name]
    for name, value in configured.items():
        if "{secret}" in value:
            if secret is None:
                raise errors.AuthFailed(
                    f"header {name!r} needs the secret of instance {call.instance.name!r}, "
                    "which has none"
                )
            value = value.replace("{secret}", secret)
        out[name] = value
    return out


# --- replies -----------------------------------------------------------------------------


def reply_result(raw: bytes, call: Call) -> Result:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_response("a reply that is not JSON", raw, call) from exc
    picked = pick(data, call.option("result_path") or "", "result_path", raw, call)
    usage: dict[str, Any] = {}
    if usage_path := call.option("usage_path"):
        found = pick(data, usage_path, "usage_path", raw, call)
        if not isinstance(found, dict):
            raise bad_response(f"usage_path {usage_path!r} does not lead to a mapping", raw, call)
        usage = found
    return Result(picked if isinstance(picked, dict) else {"value": picked}, usage=usage)


def pick(data: Any, path: str, option: str, raw: bytes, call: Call) -> Any:
    try:
        return lookup_path(data, path)
    except PathError as exc:
        raise bad_response(f"{option} {path!r} is not in the reply ({exc})", raw, call) from exc


# --- errors ------------------------------------------------------------------------------


def error_detail(text: str) -> tuple[str, str | None]:
    """Message and code from ``error.message``, ``message`` or ``detail``; else the raw text.
    Neither is cut or scrubbed here: the caller quotes the message (:func:`snippet`)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        candidates: list[Any] = []
        code: Any = None
        if isinstance(error, dict):
            candidates.append(error.get("message"))
            code = error.get("code") or error.get("type")
        elif isinstance(error, str):
            candidates.append(error)
        candidates += [data.get("message"), data.get("detail")]
        for candidate in candidates:
            if candidate:
                message = (
                    candidate if isinstance(candidate, str) else orjson.dumps(candidate).decode()
                )
                return message, None if code is None else str(code)
    return text, None
