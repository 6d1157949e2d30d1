"""How tasks and batches look from outside: the JSON that the native API returns and that
webhook events carry. Pure functions of the records, so the store can render an event in the
transaction that ends a task (see store/outbox.py) without depending on the gateway."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from taskgate.models import Batch, Status, Task


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_Identified)


def keyset_page(found: Sequence[R], limit: int) -> tuple[list[R], str | None]:
    """A page of ``limit`` records out of ``limit + 1`` read (newest first, by id), and the
    cursor of the next page: the id of its last record, if one more was found."""
    page = list(found[:limit])
    return page, page[-1].id if len(found) > limit else None


def iso(ts: float | None) -> str | None:
    """A stored time as ISO 8601 UTC. Total: a time no calendar renders (a row written
    before durations were bounded may hold one) shows as None rather than failing a read."""
    if ts is None:
        return None
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
    except (OverflowError, OSError, ValueError):
        return None


def task_json(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "status": task.status.value,
        "kind": task.kind,
        "model": task.model,
        "route": task.route,
        "priority": task.priority.label,
        "input": task.input,
        "params": task.params,
        "result": task.result,
        "error": task.error,
        "provider_job": _job_json(task.provider_job),
        "batch_id": task.batch_id,
        "conversation_id": task.conversation_id,
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "idempotency_key": task.idempotency_key,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "deadline": iso(task.deadline),
        "usage": usage_json(task),
    }


def usage_json(task: Task) -> dict[str, Any]:
    """What the task's attempts used and cost (taskgate.pricing)."""
    return {
        "input_tokens": task.input_tokens,
        "output_tokens": task.output_tokens,
        "cost": round(task.cost, 10),
    }


def _job_json(job: dict[str, Any] | None) -> dict[str, Any] | None:
    """The backend's job as clients see it: its id, where and when it was submitted."""
    if not job:
        return None
    return {
        "id": job.get("id"),
        "route": job.get("route"),
        "instance": job.get("instance"),
        "submitted_at": iso(job.get("submitted_at")),
    }


def batch_json(batch: Batch, tasks: list[Task], base: str = "") -> dict[str, Any]:
    """A batch with a result per model, in the fields and values AI Task System's clients read
    (``batch_id``, ``status`` such as ``PROCESSING``, ``user_prompt``, ``created_at``,
    ``results[{task_id, model_name, status (0, 1, 2, 3), response_text, error_msg,
    cost_time}]``), with taskgate's own fields beside them. ``base`` (the server's URL) makes
    the links to images in ``response_text`` absolute, for pages on other origins."""
    return {
        "id": batch.id,
        "batch_id": batch.id,
        "status": batch.status(tasks),
        "kind": batch.kind,
        "first_wins": batch.first_wins,
        "created_at": iso(batch.created_at),
        "conversation_id": batch.conversation_id,
        "user_prompt": prompt_text(tasks[0].input) if tasks else None,
        "task_ids": [t.id for t in tasks],
        "results": [batch_result(t, base) for t in tasks],
    }


def output_text(task: Task) -> str | None:
    """The text a task answered (chat), if it did."""
    output = task.result.get("output") if isinstance(task.result, dict) else None
    text = output.get("text") if isinstance(output, dict) else None
    return text if isinstance(text, str) else None


def response_text(task: Task, base: str = "") -> str | None:
    """What AI Task System's clients show of an answer: its text, else its images as
    Markdown (the page renders it), linked under ``base``."""
    text = output_text(task)
    if text is not None:
        return text
    return markdown_images(task.result, base)


def markdown_images(stored: Any, base: str = "") -> str | None:
    """The files of a stored result (or of an answer kept in a conversation) as Markdown
    images linked under ``base``; None when it has none."""
    files = stored.get("files") if isinstance(stored, dict) else None
    links = [
        f"![image]({base}{f['url']})"
        for f in files or []
        if isinstance(f, dict) and isinstance(f.get("url"), str)
    ]
    return "\n\n".join(links) or None


def prompt_text(value: Any) -> str | None:
    """The user's words in a task's input: a prompt string, ``{"prompt"}``, or the text of
    the last message of ``{"messages"}`` (its text parts, when it has parts)."""
    if isinstance(value, dict) and "prompt" in value:
        value = value["prompt"]
    elif isinstance(value, dict) and isinstance(value.get("messages"), list) and value["messages"]:
        last = value["messages"][-1]
        value = last.get("content") if isinstance(last, dict) else None
    return content_text(value)


def content_text(content: Any) -> str | None:
    """A message's text: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        ]
        return "\n".join(texts)
    return None


def cost_time(task: Task) -> float | None:
    """Seconds from its first start to its end, once it has ended."""
    if task.finished_at is None or task.started_at is None:
        return None
    return round(task.finished_at - task.started_at, 3)


def error_message(task: Task) -> str | None:
    message = task.error.get("message") if isinstance(task.error, dict) else None
    return message if isinstance(message, str) else None


def batch_result(task: Task, base: str = "") -> dict[str, Any]:
    return {
        "task_id": task.id,
        "model_name": task.model,
        "status": result_code(task),
        "task_status": task.status.value,
        "response_text": response_text(task, base),
        "error_msg": error_message(task),
        "cost_time": cost_time(task),
        "result": task.result,
        "error": task.error,
    }


def result_code(task: Task) -> int:
    """A task's status as AI Task System's clients read it (its ``TaskStatus``): 0 waiting,
    3 running, 1 succeeded, 2 ended otherwise (``task_status`` says how)."""
    if task.status is Status.PENDING:
        return 0
    if task.status is Status.PROCESSING:
        return 3
    return 1 if task.status is Status.SUCCESS else 2
