"""How a task's parts show on a page: its input (a prompt as text, chat messages one by
one, anything else as JSON), its result by kind (a chat answer's text with its reasoning
apart; files as images, audio and video players or links; embeddings as their count,
dimensions and first values; the rest of the output as JSON) and a short line of a task for
the list. Text is kept whole; JSON previews are cut at :data:`PREVIEW_CHARS`. Pure: the
templates escape everything these return."""

from __future__ import annotations

import json
import re
from typing import Any

from taskgate.files.catalog import clean_type

PREVIEW_CHARS = 20_000  # a JSON preview longer than this is cut
SUMMARY_CHARS = 80  # a task's line in the list
COMPACT_CHARS = 300  # a log entry's data
EMBEDDING_VALUES = 8  # the first values of an embedding shown
EMBEDDING_VECTORS = 3  # the vectors of an embedding result previewed

MEDIA = re.compile(r"(image|audio|video)/[\w.+-]+")


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """``value`` as indented JSON, cut after ``limit`` characters (saying how many more)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… {len(text) - limit:,} more characters"


def compact(value: Any, limit: int = COMPACT_CHARS) -> str:
    """``value`` as JSON on one line, cut after ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown_input(value: Any) -> dict[str, Any]:
    """An input as the page shows it: ``text``, ``messages`` (role and text or JSON each),
    or ``json`` (a preview)."""
    if isinstance(value, str):
        return {"text": value}
    messages = value.get("messages") if isinstance(value, dict) else None
    if isinstance(messages, list) and all(isinstance(m, dict) for m in messages):
        rest = {k: v for k, v in value.items() if k != "messages"}
        return {
            "messages": [_message(m) for m in messages],
            "json": preview(rest) if rest else None,
        }
    return {"json": preview(value)}


def _message(m: dict[str, Any]) -> dict[str, Any]:
    content = m.get("content")
    if isinstance(content, str):
        return {"role": str(m.get("role", "")), "text": content}
    return {"role": str(m.get("role", "")), "json": preview(content)}


def shown_result(result: Any) -> dict[str, Any]:
    """A result (``{"output", "usage", "files"}``) by what it holds: ``text`` and
    ``reasoning`` (a chat answer), ``files`` (with ``media``: image, audio, video or None),
    ``embeddings`` (count, dimensions, preview) and ``json``: the rest of the output."""
    if not isinstance(result, dict):
        return {"json": preview(result)} if result is not None else {}
    output = result.get("output")
    out: dict[str, Any] = {"files": [_file(f) for f in result.get("files") or ()]}
    rest = dict(output) if isinstance(output, dict) else output
    if isinstance(rest, dict):
        for name in ("text", "reasoning"):
            if isinstance(rest.get(name), str):
                out[name] = rest.pop(name)
            elif name in rest and rest[name] is None:
                del rest[name]
        vectors = _vectors(rest)
        if vectors is not None:
            out["embeddings"] = embeddings(vectors)
            rest.pop("embeddings", None)
            rest.pop("embedding", None)
    if rest:
        out["json"] = preview(rest)
    return out


def _file(f: Any) -> dict[str, Any]:
    f = f if isinstance(f, dict) else {}
    kind = clean_type(str(f.get("content_type", "")))
    media = MEDIA.fullmatch(kind)
    return {
        "id": str(f.get("id", "")),
        "name": str(f.get("name", "")),
        "content_type": kind,
        "size": f.get("size"),
        "media": media.group(1) if media else None,
    }


def _vectors(output: dict[str, Any]) -> list[list[Any]] | None:
    """The embedding vectors of an output: ``embeddings`` (one per input) or ``embedding``."""
    many = output.get("embeddings")
    if isinstance(many, list) and many and all(isinstance(v, list) for v in many):
        return many
    one = output.get("embedding")
    if isinstance(one, list) and one and all(isinstance(x, int | float) for x in one):
        return [one]
    return None


def embeddings(vectors: list[list[Any]]) -> dict[str, Any]:
    """Embeddings in short: how many, their dimensions, the first values of the first few."""
    dims = sorted({len(v) for v in vectors})
    return {
        "count": len(vectors),
        "dimensions": ", ".join(map(str, dims)),
        "preview": [
            {
                "first": ", ".join(_number(x) for x in v[:EMBEDDING_VALUES]),
                "more": max(0, len(v) - EMBEDDING_VALUES),
            }
            for v in vectors[:EMBEDDING_VECTORS]
        ],
    }


def _number(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def summary(value: Any, limit: int = SUMMARY_CHARS) -> str:
    """A task's input in one short line: its prompt or last message, else its JSON."""
    text: Any = value
    if isinstance(value, dict):
        messages = value.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            text = messages[-1].get("content", "")
        elif "prompt" in value:
            text = value["prompt"]
    if not isinstance(text, str):
        text = json.dumps(text, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
