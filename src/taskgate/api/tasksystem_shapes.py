"""taskgate's records in AI Task System's shapes, for the paths its API shares with taskgate's
own: ``GET /v1/tasks/{id}`` (a task as its ``TaskQueryResponse``), ``GET
/v1/conversations/{id}/history`` (the list of messages its server answered) and the
``conversations`` entries of ``GET /v1/conversations``. A record answers in the shape of the API
that made it (``Task.api``, ``Conversation.api``) unless the client asks for the other one with
``?api=`` (see ``api/compat.answer_shape``); api/native.py dispatches here.

AI Task System's server listed a conversation's history task by task: the prompt as a user
message (with the URLs of its files) and, when the task succeeded, the answer; a placeholder
answer (``is_loading``) while it ran; a failed task not at all. Its page reads files as images
when their URL ends in an image's extension, so their URLs are ``/files/{id}.{ext}``, the
path and form its server gave them (served by api/tasksystem.py).
"""

from __future__ import annotations

import dataclasses
import mimetypes
from typing import Any

from taskgate.gateway import Gateway
from taskgate.history import grouped_turns
from taskgate.models import ApiKey, Conversation, Message, Status, StoredFile, Task
from taskgate.views import (
    content_text,
    cost_time,
    error_message,
    iso,
    markdown_images,
    prompt_text,
    response_text,
    result_code,
)

TASKSYSTEM = "tasksystem"  # the value of ``api`` on the records AI Task System's API makes
LOADING = "thinking..."  # AI Task System's placeholder for an answer still being made
MEDIA_PARTS = ("image_url", "video_url")  # the parts a form's files become in a chat turn


def task_json(task: Task, base: str) -> dict[str, Any]:
    """A task as AI Task System's clients read it, ``status`` its ``TaskStatus`` number (0
    waiting, 3 running, 1 succeeded, 2 ended otherwise), ``task_status`` taskgate's."""
    answer = response_text(task, base)
    return {
        "task_id": task.id,
        "conversation_id": task.conversation_id,
        "batch_id": task.batch_id,
        "status": result_code(task),
        "task_status": task.status.value,
        "task_type": task_type(task),
        "prompt": prompt_text(task.input),
        "model_name": task.model,
        "model": task.model,
        "response_text": answer if task.kind != "image" else None,
        "result_url": image_url(task, base),
        "error_msg": error_message(task),
        "cost_time": cost_time(task),
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
    }


def task_type(task: Task) -> str:
    """``TEXT``, ``MULTIMODAL`` (a chat turn with files) or ``IMAGE``, as AI Task System
    typed its tasks; another kind in capitals."""
    if task.kind == "image":
        return "IMAGE"
    if task.kind != "chat":
        return task.kind.upper()
    last = task.input["messages"][-1] if _messages(task.input) else None
    return "MULTIMODAL" if isinstance(last, dict) and attached(last.get("content")) else "TEXT"


def _messages(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("messages"), list) and value["messages"]


def image_url(task: Task, base: str) -> str | None:
    """The first image an image task made (AI Task System's ``result_url``)."""
    files = task.result.get("files") if isinstance(task.result, dict) else None
    first = files[0] if files and isinstance(files[0], dict) else None
    return base + first["url"] if first and isinstance(first.get("url"), str) else None


def attached(content: Any) -> list[str]:
    """The ids of the files a user turn carries (its media parts naming stored files)."""
    if not isinstance(content, list):
        return []
    found = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        media = part.get(kind) if kind in MEDIA_PARTS else None
        if isinstance(media, dict) and isinstance(media.get("file_id"), str):
            found.append(media["file_id"])
    return found


def file_url(base: str, f: StoredFile) -> str:
    """Where AI Task System's page finds an attached file: ``/files/{id}.{ext}``."""
    ext = mimetypes.guess_extension(f.content_type) or ""
    return f"{base}/files/{f.id}{ext}"


def conversation_entry(c: Conversation) -> dict[str, Any]:
    return {"conversation_id": c.id, "title": c.title, "modified": iso(c.updated_at)}


async def conversation_history(
    gw: Gateway, key: ApiKey, c: Conversation, messages: list[Message], base: str
) -> list[dict[str, Any]]:
    """The conversation's history as AI Task System's server answered it (see
    :func:`history`), its tasks and attached files read."""
    tasks = [gw.signed(t) for t in await gw.conversations.tasks(c)]
    messages = [dataclasses.replace(m, content=gw.file_links.result(m.content)) for m in messages]
    ids = [i for m in messages if m.role == "user" for i in attached(m.content)]
    stored = await gw.store.file_records.some(ids, key.scope)
    return history(messages, tasks, {i: file_url(base, f) for i, f in stored.items()}, base)


def history(
    messages: list[Message], tasks: list[Task], files: dict[str, str], base: str
) -> list[dict[str, Any]]:
    """The conversation as AI Task System's server listed it, task by task (``files``: the
    URL of each attached file by id)."""
    by_turn: dict[int, list[Task]] = {}
    for t in tasks:
        if t.turn_id is not None:
            by_turn.setdefault(t.turn_id, []).append(t)
    out: list[dict[str, Any]] = []
    for user, answers in grouped_turns(messages):
        prompt = {
            "role": "user",
            "content": content_text(user.content) or "",
            "files": [files[i] for i in attached(user.content) if i in files],
        }
        turn_tasks = by_turn.get(user.id, []) if user.id is not None else []
        for model, answer in _answers(turn_tasks, answers, base):
            out.append({**prompt, "model": model})
            if answer is not None:
                out.append(answer)
    return out


def _answers(
    tasks: list[Task], answers: list[Message], base: str
) -> list[tuple[str | None, dict[str, Any] | None]]:
    """Each model's answer to a turn: a task's (its kept answer, or a placeholder while it
    runs; none when it failed), then the answers whose task was purged."""
    kept = {a.task_id: a for a in answers if a.task_id is not None}
    out: list[tuple[str | None, dict[str, Any] | None]] = []
    for t in tasks:
        if not t.terminal:
            loading = {"role": "assistant", "content": LOADING, "is_loading": True}
            out.append((t.model, {**loading, "model": t.model}))
        elif t.status is Status.SUCCESS:
            stored = kept.get(t.id)
            text = answer_text(stored.content, base) if stored else response_text(t, base)
            out.append((t.model, _said(text, t.model)))
    shown = {t.id for t in tasks}
    for a in answers:
        if a.task_id not in shown:
            out.append((a.model, _said(answer_text(a.content, base), a.model)))
    return out


def _said(text: str | None, model: str | None) -> dict[str, Any] | None:
    return {"role": "assistant", "content": text, "model": model} if text else None


def answer_text(content: Any, base: str) -> str | None:
    """An answer kept in the history, as text: its text, or the images it made as Markdown."""
    return content if isinstance(content, str) else markdown_images(content, base)
