"""What a chat turn in a conversation is sent: the turns before it, bounded, as messages.

Pure functions over stored :class:`~taskgate.models.Message` rows. A turn is a user message
and the answers that followed it; a fan-out turn has one answer per model. A model is shown
its own earlier answer to each turn where it gave one, else the first answer given, so a
conversation can switch models and each still sees a coherent history.
"""

from __future__ import annotations

from typing import Any

import orjson

from taskgate.config import ConversationSettings
from taskgate.errors import BadRequest
from taskgate.models import Message

CHARS_PER_TOKEN = 4


def user_turn(value: Any) -> Any:
    """The new user turn of a chat input: a string, ``{"prompt"}``, or the last message of
    ``{"messages": [...]}`` (whose earlier messages come after the history)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "prompt" in value:
        return value["prompt"]
    if isinstance(value, dict) and isinstance(value.get("messages"), list) and value["messages"]:
        last = value["messages"][-1]
        if isinstance(last, dict) and last.get("role") == "user":
            return last.get("content")
    raise BadRequest(
        "a chat turn in a conversation needs a prompt: a string, {'prompt': ...} or messages "
        "ending with a user message"
    )


def with_history(value: Any, history: list[Message], model: str, conf: ConversationSettings) -> Any:
    """The chat input with the conversation's earlier turns put first."""
    earlier = context(history, model, conf)
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        return {**value, "messages": earlier + list(value["messages"])}
    return {"messages": [*earlier, {"role": "user", "content": user_turn(value)}]}


def context(history: list[Message], model: str, conf: ConversationSettings) -> list[dict[str, Any]]:
    """The last turns, as chat messages, within the configured bounds."""
    turns = [_as_messages(turn, model) for turn in grouped_turns(history)]
    kept: list[list[dict[str, Any]]] = []
    budget = conf.max_tokens * CHARS_PER_TOKEN
    for turn in reversed(turns[-conf.max_turns :] if conf.max_turns else []):
        budget -= sum(_size(m["content"]) for m in turn)
        if budget < 0:
            break
        kept.insert(0, turn)
    return [m for turn in kept for m in turn]


def grouped_turns(history: list[Message]) -> list[tuple[Message, list[Message]]]:
    """Each user message with its answers: those that name it (an answer may come after
    later turns were sent), else, for answers kept without a turn, the turn before them."""
    turns: list[tuple[Message, list[Message]]] = []
    by_id: dict[int, list[Message]] = {}
    for m in history:
        if m.role == "user":
            turns.append((m, []))
            if m.id is not None:
                by_id[m.id] = turns[-1][1]
        elif m.turn_id is not None and m.turn_id in by_id:
            by_id[m.turn_id].append(m)
        elif turns:
            turns[-1][1].append(m)
    return turns


def _as_messages(turn: tuple[Message, list[Message]], model: str) -> list[dict[str, Any]]:
    user, answers = turn
    out = [{"role": "user", "content": user.content}]
    answer = next((a for a in answers if a.model == model), answers[0] if answers else None)
    if answer is not None:
        content = answer.content
        out.append(
            {
                "role": "assistant",
                "content": content if isinstance(content, str) else _text(content),
            }
        )
    return out


def _text(content: Any) -> str:
    return orjson.dumps(content).decode()


def _size(content: Any) -> int:
    return len(content) if isinstance(content, str) else len(_text(content))


def answer_content(result: Any) -> Any:
    """What an answer adds to the history: its text, else the files or output it made."""
    output = result.get("output") if isinstance(result, dict) else None
    if isinstance(output, dict) and isinstance(output.get("text"), str):
        return output["text"]
    files = result.get("files") if isinstance(result, dict) else None
    if files:
        return {"files": [{"id": f["id"], "url": f["url"]} for f in files]}
    return output
