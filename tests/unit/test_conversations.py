"""The history a chat turn is sent: per-model answers, bounds by turns and tokens."""

from __future__ import annotations

import pytest

from taskgate.config import ConversationSettings
from taskgate.errors import BadRequest
from taskgate.history import answer_content, context, user_turn, with_history
from taskgate.models import Message

WIDE = ConversationSettings(max_turns=20, max_tokens=8000)


def user(text: str) -> Message:
    return Message("c", "user", text, 0.0)


def answer(text: str, model: str) -> Message:
    return Message("c", "assistant", text, 0.0, model=model)


HISTORY = [
    user("q1"),
    answer("a1 by alpha", "alpha"),
    answer("a1 by beta", "beta"),
    user("q2"),
    answer("a2 by beta", "beta"),
]


def test_a_model_sees_its_own_answers_else_the_first_one_given() -> None:
    assert context(HISTORY, "alpha", WIDE) == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1 by alpha"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2 by beta"},  # alpha did not answer q2
    ]
    assert context(HISTORY, "beta", WIDE)[1]["content"] == "a1 by beta"


def test_context_keeps_the_latest_turns_within_turn_and_token_bounds() -> None:
    assert context(HISTORY, "beta", ConversationSettings(max_turns=1)) == [
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2 by beta"},
    ]
    assert context(HISTORY, "beta", ConversationSettings(max_turns=0)) == []
    # q2 + "a2 by beta" is 12 characters: 3 tokens hold it, 2 do not
    assert len(context(HISTORY, "beta", ConversationSettings(max_tokens=3))) == 2
    assert context(HISTORY, "beta", ConversationSettings(max_tokens=2)) == []


def test_the_new_turn_follows_the_history() -> None:
    assert with_history("q3", HISTORY[:2], "alpha", WIDE)["messages"][-1] == {
        "role": "user",
        "content": "q3",
    }
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q3"}]
    out = with_history({"messages": messages, "x": 1}, HISTORY[:2], "alpha", WIDE)
    assert out["messages"][2:] == messages and out["x"] == 1
    assert user_turn({"prompt": "p"}) == "p" and user_turn({"messages": messages}) == "q3"
    with pytest.raises(BadRequest):
        user_turn({"messages": [{"role": "assistant", "content": "x"}]})


def test_what_an_answer_adds_to_the_history() -> None:
    assert answer_content({"output": {"text": "hi"}}) == "hi"
    files = [{"id": "f1", "url": "/v1/files/f1", "size": 3}]
    assert answer_content({"output": {"x": 1}, "files": files}) == {
        "files": [{"id": "f1", "url": "/v1/files/f1"}]
    }
    assert answer_content({"output": {"x": 1}}) == {"x": 1}


def test_a_late_answer_is_filed_under_the_turn_it_answers() -> None:
    history = [
        Message("c", "user", "q1", 0.0, id=1),
        answer_to(1, "fast a1", "fast", 2),
        Message("c", "user", "q2", 0.0, id=3),  # sent before slow answered q1
        answer_to(1, "slow a1", "slow", 4),
    ]
    assert context(history, "slow", WIDE) == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "slow a1"},
        {"role": "user", "content": "q2"},
    ]


def answer_to(turn: int, text: str, model: str, id: int) -> Message:
    return Message("c", "assistant", text, 0.0, model=model, id=id, turn_id=turn)
