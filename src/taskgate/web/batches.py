"""A batch's page (its models' answers side by side, refreshing themselves until every
task has ended) and the conversations: the list, keyset-paged, and a conversation's turns
in order, each user prompt with each model's answer. Reads are the API's own calls, within
the viewer's tenant (``Gateway.get_batch``, ``batch_view``, ``gw.conversations``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from taskgate.gateway import Gateway
from taskgate.models import Message
from taskgate.store.sessions import Session
from taskgate.views import keyset_page
from taskgate.web.render import page
from taskgate.web.session import viewer
from taskgate.web.shown import shown_input, shown_result

router = APIRouter(include_in_schema=False, tags=["ui"])

PAGE = 50  # conversations a page of the list shows


def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


# --- batches ---------------------------------------------------------------------------------


@router.get("/ui/batches/{batch_id}")
async def batch_page(
    batch_id: str, request: Request, session: Session = Depends(viewer)
) -> Response:
    return page(request, "batch.html", session, **await _batch(request, session, batch_id))


@router.get("/ui/batches/{batch_id}/live")
async def batch_live(
    batch_id: str, request: Request, session: Session = Depends(viewer)
) -> Response:
    """The answers of a batch (an htmx fragment, asked for while some task runs)."""
    return page(request, "_batch_live.html", session, **await _batch(request, session, batch_id))


async def _batch(request: Request, session: Session, batch_id: str) -> dict[str, Any]:
    gw = _gateway(request)
    batch, tasks = await gw.get_batch(session.key, batch_id)
    return {
        "batch": batch,
        "view": await gw.batch_view(batch, tasks),
        "answers": [(t, shown_result(t.result)) for t in tasks],
        "input": shown_input(tasks[0].input) if tasks else None,
        "running": any(not t.terminal for t in tasks),
    }


# --- conversations -----------------------------------------------------------------------------


@router.get("/ui/conversations")
async def conversations(
    request: Request, cursor: str | None = None, session: Session = Depends(viewer)
) -> Response:
    found = await _gateway(request).conversations.page(session.key, cursor or None, PAGE + 1)
    shown, next_cursor = keyset_page(found, PAGE)
    return page(
        request,
        "conversations.html",
        session,
        conversations=shown,
        next_page=urlencode({"cursor": next_cursor}) if next_cursor else None,
    )


@router.get("/ui/conversations/{conversation_id}")
async def conversation(
    conversation_id: str, request: Request, session: Session = Depends(viewer)
) -> Response:
    c, messages = await _gateway(request).conversations.get(session.key, conversation_id)
    return page(request, "conversation.html", session, conversation=c, turns=turns(messages))


@dataclass
class Turn:
    """A user's turn (its prompt as it shows; None for answers before any prompt) and the
    answers to it, each with its content as a result shows (see ``shown_result``)."""

    prompt: Message | None
    shown: dict[str, Any]
    answers: list[tuple[Message, dict[str, Any]]] = field(default_factory=list)


def turns(messages: list[Message]) -> list[Turn]:
    """A conversation's messages as turns, in order: each user message with the answers
    that name it (an answer that names none belongs to the turn before it)."""
    out: list[Turn] = []
    by_id: dict[int | None, Turn] = {}
    for m in messages:
        if m.role == "user":
            out.append(Turn(m, shown_input(m.content)))
            by_id[m.id] = out[-1]
            continue
        turn = by_id.get(m.turn_id) if m.turn_id is not None else None
        if turn is None:
            if not out:
                out.append(Turn(None, {}))
            turn = out[-1]
        turn.answers.append((m, shown_result(as_result(m.content))))
    return out


def as_result(content: Any) -> dict[str, Any]:
    """An answer's content (its text, or what it made: ``{"files": [...]}``) as a result."""
    if isinstance(content, str):
        return {"output": {"text": content}}
    if isinstance(content, dict) and isinstance(content.get("files"), list):
        rest = {k: v for k, v in content.items() if k != "files"}
        return {"output": rest or None, "files": content["files"]}
    return {"output": content}
