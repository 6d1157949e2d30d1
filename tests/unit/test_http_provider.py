"""The ``http`` provider's pure parts: template rendering, path lookup, option checks."""

from __future__ import annotations

from typing import Any

import pytest

from taskgate.config import Instance, Route
from taskgate.providers import lookup
from taskgate.providers.http import (
    DEFAULT_BODY,
    HttpProvider,
    PathError,
    error_detail,
    lookup_path,
    render,
    resolver,
    validate_template,
)
from taskgate.providers.web import without_query

VALUES: dict[str, Any] = {
    "input": {"query": "cats", "doc": {"ids": [7, 8]}, "n": 3},
    "params": {"top_k": 5, "flags": [True, None], "temp": 0.5},
    "model": "ranker-1",
    "kind": "rank",
    "task_id": "t-42",
}


def rendered(template: Any, values: dict[str, Any] = VALUES) -> Any:
    return render(template, resolver(values))


def route(**options: Any) -> Route:
    instance = Instance(name="i1", endpoint="http://127.0.0.1:1")
    return Route(name="r", models=["*"], provider="http", instances=[instance], options=options)


# --- rendering ---------------------------------------------------------------------------


def test_the_default_body_sends_model_input_and_params() -> None:
    assert rendered(DEFAULT_BODY) == {
        "model": "ranker-1",
        "input": VALUES["input"],
        "params": VALUES["params"],
    }


@pytest.mark.parametrize(
    ("placeholder", "expected"),
    [
        ("{{input.n}}", 3),
        ("{{params.temp}}", 0.5),
        ("{{params.flags}}", [True, None]),
        ("{{input.doc}}", {"ids": [7, 8]}),
        ("{{input.doc.ids.1}}", 8),
        ("{{params.flags.1}}", None),
        ("{{kind}}", "rank"),
        ("{{task_id}}", "t-42"),
        ("{{ model }}", "ranker-1"),
    ],
)
def test_placeholders_keep_their_json_type(placeholder: str, expected: Any) -> None:
    assert rendered(placeholder) == expected


def test_nested_structures_are_rendered_all_the_way_down() -> None:
    template = {
        "meta": {"id": "{{task_id}}", "tags": ["fixed", "{{kind}}", 1, None, False]},
        "queries": [{"q": "{{input.query}}", "k": "{{params.top_k}}"}],
        "{{model}}": "keys are not rendered",
    }
    assert rendered(template) == {
        "meta": {"id": "t-42", "tags": ["fixed", "rank", 1, None, False]},
        "queries": [{"q": "cats", "k": 5}],
        "{{model}}": "keys are not rendered",
    }


@pytest.mark.parametrize(
    "text", ["plain", "model: {{model}}", "{{input}} and {{model}}", "{model}", "{{input"]
)
def test_strings_that_are_not_exactly_a_placeholder_are_kept(text: str) -> None:
    assert rendered(text) == text


def test_a_string_input_can_be_sent_as_it_is() -> None:
    assert rendered({"text": "{{input}}"}, {**VALUES, "input": "hello"}) == {"text": "hello"}


def test_the_template_is_not_changed() -> None:
    template = {"a": ["{{model}}"]}
    rendered(template)
    assert template == {"a": ["{{model}}"]}


@pytest.mark.parametrize(
    "template",
    [
        "{{prompt}}",
        {"a": ["{{inputs}}"]},
        {"a": {"b": "{{model.name}}"}},
        "{{task_id.x}}",
        "{{input.}}",
        "{{input..a}}",
        "{{}}",
    ],
)
def test_unknown_placeholders_are_refused(template: Any) -> None:
    with pytest.raises(ValueError, match="placeholder"):
        validate_template(template)


def test_a_missing_field_is_a_path_error_at_render_time() -> None:
    with pytest.raises(PathError, match="'missing'"):
        rendered({"q": "{{input.missing}}"})
    with pytest.raises(PathError):
        rendered("{{input.query}}", {**VALUES, "input": "not a mapping"})


# --- path lookup -------------------------------------------------------------------------

REPLY = {
    "choices": [{"message": {"content": "hi", "extra": None}}, {"message": {"content": "2nd"}}],
    "meta": {"usage": {"tokens": 4}, "0": "a key that looks like an index"},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", REPLY),
        ("choices.0.message.content", "hi"),
        ("choices.1.message", {"content": "2nd"}),
        ("choices.-1.message.content", "2nd"),
        ("choices.0.message.extra", None),
        ("meta.usage", {"tokens": 4}),
        ("meta.0", "a key that looks like an index"),
    ],
)
def test_lookup_path_through_mappings_and_lists(path: str, expected: Any) -> None:
    assert lookup_path(REPLY, path) == expected


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("nope", "'nope' under the top"),
        ("choices.2.message", "'2' under choices"),
        ("choices.-3", "'-3' under choices"),
        ("choices.first", "'first' under choices"),
        ("choices.0.message.content.x", "'x' under choices.0.message.content"),
        ("meta.usage.tokens.0", "'0' under meta.usage.tokens"),
    ],
)
def test_lookup_path_names_what_is_missing(path: str, names: str) -> None:
    with pytest.raises(PathError) as caught:
        lookup_path(REPLY, path)
    assert names in str(caught.value)
    assert repr(path) in str(caught.value)


# --- building the provider ---------------------------------------------------------------


def test_registered_as_http() -> None:
    assert lookup("http") is HttpProvider


def test_an_unknown_placeholder_is_refused_when_the_provider_is_built() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder '\{\{prompt\}\}'"):
        HttpProvider(route(body={"q": ["{{prompt}}"]}))


def test_an_unknown_placeholder_in_instance_options_is_refused_too() -> None:
    instance = Instance(name="i1", endpoint="http://x", options={"body": "{{nope}}"})
    with pytest.raises(ValueError, match=r"instance 'i1'.*unknown placeholder"):
        HttpProvider(Route(name="r", models=["*"], provider="http", instances=[instance]))


@pytest.mark.parametrize(
    "options",
    [
        {"headers": {"X-N": 1}},
        {"headers": ["Authorization: x"]},
        {"path": 3},
        {"result_path": "a..b"},
        {"usage_path": 7},
    ],
)
def test_bad_options_are_refused_when_built(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="option"):
        HttpProvider(route(**options))


def test_an_instance_without_endpoint_is_refused() -> None:
    r = Route(name="r", models=["*"], provider="http", instances=[Instance(name="i1")])
    with pytest.raises(ValueError, match="needs an endpoint"):
        HttpProvider(r)


def test_field_placeholders_and_a_null_body_are_accepted() -> None:
    HttpProvider(route(body={"q": "{{input.a.b}}", "k": "{{params.k}}"}))
    HttpProvider(route(body=None, method="GET"))


# --- error messages ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"error": {"message": "too long", "code": "ctx"}}', ("too long", "ctx")),
        ('{"error": "plain error"}', ("plain error", None)),
        ('{"message": "from message"}', ("from message", None)),
        ('{"detail": "bad field"}', ("bad field", None)),
        ('{"detail": [{"loc": ["body", "q"]}]}', ('[{"loc":["body","q"]}]', None)),
        ("<html>oops</html>\n", ("<html>oops</html>\n", None)),  # quoted by snippet()
        ("", ("", None)),
        ('{"other": 1}', ('{"other": 1}', None)),
    ],
)
def test_error_detail(text: str, expected: tuple[str, str | None]) -> None:
    assert error_detail(text) == expected


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://cdn.example/x.png?X-Amz-Signature=abc", "https://cdn.example/x.png"),
        ("https://user:hunter2@cdn.example:8443/a/b#frag", "https://cdn.example:8443/a/b"),
    ],
)
def test_a_url_is_shown_without_its_credentials(url: str, shown: str) -> None:
    assert without_query(url) == shown
