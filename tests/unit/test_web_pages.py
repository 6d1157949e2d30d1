"""The task pages' pure parts: the list's filters (web/listing.py), how inputs and results
show (web/shown.py, and the templates' macros, which escape them), a conversation's turns
(web/batches.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qsl

import pytest

from taskgate.errors import BadRequest
from taskgate.models import Message, Status
from taskgate.web.batches import as_result, turns
from taskgate.web.listing import ListQuery
from taskgate.web.render import templates
from taskgate.web.shown import PREVIEW_CHARS, preview, shown_input, shown_result, summary

# --- the list's filters ------------------------------------------------------------------------


def test_filters_are_read_from_a_query_and_become_the_stores_filter() -> None:
    pairs = [
        ("status", "failed"),
        ("status", "TIMEOUT"),
        ("status", "FAILED"),
        ("kind", "chat"),
        ("route", "alpha"),
        ("model", " gpt-4o "),
        ("tenant", "acme"),
        ("created_after", "2026-11-29T08:14"),
        ("created_before", "2026-11-30T00:00:00+01:00"),
        ("cursor", "0199"),
        ("csrf", "ignored"),
    ]
    q = ListQuery.parse(pairs, admin=True)
    f = q.task_filter()
    assert f.statuses == (Status.FAILED, Status.TIMEOUT)
    assert (f.kind, f.route, f.model, f.tenant, f.before_id) == (
        "chat",
        "alpha",
        "gpt-4o",
        "acme",
        "0199",
    )
    assert f.created_after == dt.datetime(2026, 11, 29, 8, 14, tzinfo=dt.UTC).timestamp()
    assert f.created_before == dt.datetime(2026, 11, 29, 23, 0, tzinfo=dt.UTC).timestamp()
    assert f.limit == 51  # one more than a page: is there another?
    sel = q.selection()
    assert sel.route == "alpha" and sel.filter.before_id is None  # every page


def test_the_next_page_carries_the_filters_and_the_cursor() -> None:
    q = ListQuery.parse([("status", "FAILED"), ("created_after", "2026-11-29T08:14")], True)
    assert parse_qsl(q.next_page("t9")) == [
        ("status", "FAILED"),
        ("created_after", "2026-11-29T08:14:00"),
        ("cursor", "t9"),
    ]
    again = ListQuery.parse(parse_qsl(q.next_page("t9")), True)
    assert again == ListQuery.parse([*parse_qsl(q.first_page()), ("cursor", "t9")], True)
    assert again.cursor == "t9" and again.filtering and not ListQuery().filtering


def test_only_an_admin_filters_by_tenant() -> None:
    assert ListQuery.parse([("tenant", "other")], admin=False).tenant == ""
    assert not ListQuery.parse([("tenant", "other")], admin=False).filtering


@pytest.mark.parametrize(
    ("pairs", "says"),
    [
        ([("status", "DONE")], "unknown status 'DONE'"),
        ([("created_after", "yesterday")], "'created_after' is not a time"),
        ([("model", "m" * 201)], "'model' is longer than 200"),
    ],
)
def test_a_bad_filter_is_refused_by_name(pairs: list[tuple[str, str]], says: str) -> None:
    with pytest.raises(BadRequest) as info:
        ListQuery.parse(pairs, admin=True)
    assert says in info.value.message


# --- inputs and results ------------------------------------------------------------------------


def test_a_chat_answer_shows_its_text_and_reasoning_apart() -> None:
    result = {
        "output": {"text": "It is 4.", "reasoning": "2 and 2", "finish_reason": "stop"},
        "usage": {"input_tokens": 3},
    }
    shown = shown_result(result)
    assert (shown["text"], shown["reasoning"]) == ("It is 4.", "2 and 2")
    assert '"finish_reason": "stop"' in shown["json"] and "It is 4" not in shown["json"]
    assert "reasoning" not in shown_result({"output": {"text": "x", "reasoning": None}})


def test_files_show_by_their_media_type() -> None:
    files = [
        {"id": "f1", "name": "a.png", "content_type": "image/png", "size": 10},
        {"id": "f2", "name": "b.wav", "content_type": "audio/wav", "size": 10},
        {"id": "f3", "name": "c.mp4", "content_type": "video/mp4; codecs=avc1", "size": 10},
        {"id": "f4", "name": "d.svg", "content_type": "image/svg+xml", "size": 10},
        {"id": "f5", "name": "e.pdf", "content_type": "application/pdf\r\nX-Evil: 1"},
    ]
    shown = shown_result({"output": {"kind": "image"}, "files": files})
    assert [f["media"] for f in shown["files"]] == ["image", "audio", "video", "image", None]
    assert shown["files"][2]["content_type"] == "video/mp4"
    assert shown["files"][4]["content_type"] == "application/octet-stream"


def test_embeddings_show_as_count_dimensions_and_first_values() -> None:
    vectors = [[i / 10 for i in range(12)] for _ in range(5)]
    shown = shown_result({"output": {"embeddings": vectors, "model": "e"}})
    e = shown["embeddings"]
    assert (e["count"], e["dimensions"]) == (5, "12")
    assert len(e["preview"]) == 3
    assert e["preview"][0] == {
        "first": "0.0000, 0.1000, 0.2000, 0.3000, 0.4000, 0.5000, 0.6000, 0.7000",
        "more": 4,
    }
    assert "embeddings" not in shown["json"]
    single = shown_result({"output": {"embedding": [1, 2, 3]}})
    assert single["embeddings"]["count"] == 1 and "json" not in single


def test_json_previews_are_cut_and_text_is_kept_whole() -> None:
    long = "word " * 20_000
    assert shown_input(long) == {"text": long}
    cut = preview({"blob": "x" * (PREVIEW_CHARS * 2)})
    assert len(cut) < PREVIEW_CHARS + 100 and cut.endswith("more characters")
    assert preview({"a": 1}) == '{\n  "a": 1\n}'


def test_chat_messages_show_one_by_one() -> None:
    value = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ],
        "tools": [],
    }
    shown = shown_input(value)
    assert shown["messages"][0] == {"role": "system", "text": "Be brief."}
    assert '"type": "text"' in shown["messages"][1]["json"]
    assert shown["json"] == '{\n  "tools": []\n}'


def test_a_tasks_line_in_the_list_is_short() -> None:
    assert summary("  a\n b  ") == "a b"
    assert summary({"messages": [{"role": "user", "content": "last one"}]}) == "last one"
    assert summary({"prompt": "a cat"}) == "a cat"
    assert summary("x" * 200).endswith("…") and len(summary("x" * 200)) == 80
    assert summary(["a", "b"]) == '["a", "b"]'


def _macro(name: str, value: dict[str, Any]) -> str:
    module = templates.env.get_template("_shown.html").module
    return str(getattr(module, name)(value))


def test_the_macros_escape_what_tasks_hold() -> None:
    evil = '<script>alert(1)</script><img src=x onerror="boom">'
    html = _macro("result", shown_result({"output": {"text": evil, "reasoning": evil}}))
    html += _macro("input", shown_input({"messages": [{"role": evil, "content": evil}]}))
    html += _macro("input", shown_input({"prompt": evil}))
    assert "<script>" not in html and "<img src=x" not in html
    assert html.count("&lt;script&gt;") == 5
    files = [{"id": 'f"><script>', "name": evil, "content_type": "image/png"}]
    media = _macro("result", shown_result({"files": files}))
    assert "<script>" not in media and 'src="/ui/files/f%22%3E%3Cscript%3E"' in media


def test_each_kind_of_result_has_its_element() -> None:
    files = [
        {"id": "f1", "content_type": "image/png"},
        {"id": "f2", "content_type": "audio/wav"},
        {"id": "f3", "content_type": "video/mp4"},
    ]
    html = _macro("result", shown_result({"output": {"text": "hi"}, "files": files}))
    assert '<img src="/ui/files/f1"' in html
    assert '<audio controls preload="metadata" src="/ui/files/f2">' in html
    assert '<video controls preload="metadata" src="/ui/files/f3">' in html
    assert '<div class="text answer">hi</div>' in html


# --- a conversation's turns --------------------------------------------------------------------


def _message(id: int, role: str, content: Any, turn_id: int | None = None) -> Message:
    model = None if role == "user" else "m"
    return Message("c1", role, content, float(id), model, f"t{id}", id, turn_id)


def test_turns_put_each_answer_under_the_prompt_it_answers() -> None:
    messages = [
        _message(1, "user", "first"),
        _message(3, "user", "second"),
        _message(2, "assistant", "to the first", turn_id=1),
        _message(4, "assistant", {"files": [{"id": "f1", "url": "/v1/files/f1"}]}, turn_id=3),
        _message(5, "assistant", "to no turn"),
    ]
    found = turns(messages)
    assert [t.prompt.content for t in found if t.prompt] == ["first", "second"]
    assert [[m.id for m, _ in t.answers] for t in found] == [[2], [4, 5]]
    assert found[0].answers[0][1]["text"] == "to the first"
    assert found[1].answers[0][1]["files"][0]["id"] == "f1"
    assert turns([_message(1, "assistant", "alone")])[0].prompt is None


def test_an_answers_content_becomes_a_result() -> None:
    assert as_result("hi") == {"output": {"text": "hi"}}
    assert as_result({"files": [{"id": "f"}]}) == {"output": None, "files": [{"id": "f"}]}
    assert as_result({"kind": "video"}) == {"output": {"kind": "video"}}
