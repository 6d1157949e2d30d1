"""The task pages: the list (filters, lookup by id, keyset pages, and for admins retry and
cancel of everything the filters take), a task's page (input, parameters, result by kind,
attempts, log, webhook deliveries; its live part refreshing itself while the task runs, and
its events as they happen; cancel and, for admins, retry) and the files of results, for
the pages' images and players. Every read and action is the API's own call, within the
viewer's tenant: ``Gateway`` (get, view, timeline, list_tasks, cancel) and ``gw.control``
(retry, retry_where, cancel_where)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from taskgate.api.native import download_headers, event_stream
from taskgate.errors import ApiError
from taskgate.files import clean_type
from taskgate.gateway import Gateway
from taskgate.models import Status, Task
from taskgate.store.control import RETRYABLE
from taskgate.store.sessions import Session
from taskgate.views import keyset_page
from taskgate.web.listing import PAGE, ListQuery, shown_time
from taskgate.web.render import page
from taskgate.web.session import acting, admin_acting, viewer
from taskgate.web.shown import compact, preview, shown_input, shown_result, summary

router = APIRouter(include_in_schema=False, tags=["ui"])

LONGEST_ID = 64


def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


# --- the list --------------------------------------------------------------------------------


@router.get("/ui/tasks")
async def tasks(request: Request, session: Session = Depends(viewer)) -> Response:
    """The list; ``?id=`` jumps to that task's page."""
    wanted = request.query_params.get("id", "").strip()
    if wanted:
        return RedirectResponse(f"/ui/tasks/{quote(wanted[:LONGEST_ID], safe='')}", 303)
    query = ListQuery.parse(request.query_params.multi_items(), session.key.admin)
    return await _list(request, session, query)


@router.post("/ui/tasks/retry")
async def retry_many(request: Request, session: Session = Depends(admin_acting)) -> Response:
    """Run again every ended task the filters take (not just the page shown)."""
    query = ListQuery.parse((await request.form()).multi_items(), admin=True)
    try:
        done = await _gateway(request).control.retry_where(session.key, query.selection())
    except ApiError as exc:
        return await _list(request, session, query, error=exc.message)
    return await _list(request, session, query, notice=f"{_tasks(len(done))} will run again.")


@router.post("/ui/tasks/cancel")
async def cancel_many(request: Request, session: Session = Depends(admin_acting)) -> Response:
    """Cancel every waiting or running task the filters take (not just the page shown)."""
    query = ListQuery.parse((await request.form()).multi_items(), admin=True)
    try:
        done = await _gateway(request).control.cancel_where(session.key, query.selection())
    except ApiError as exc:
        return await _list(request, session, query, error=exc.message)
    return await _list(request, session, query, notice=f"{_tasks(len(done))} cancelled.")


def _tasks(n: int) -> str:
    return f"{n} task{'' if n == 1 else 's'}"


async def _list(request: Request, session: Session, query: ListQuery, **said: Any) -> Response:
    gw = _gateway(request)
    shown, next_cursor = keyset_page(await gw.list_tasks(session.key, query.task_filter()), PAGE)
    return page(
        request,
        "tasks.html",
        session,
        query=query,
        tasks=[(t, summary(t.input)) for t in shown],
        next_page=query.next_page(next_cursor) if next_cursor else None,
        first_page=query.first_page(),
        after=shown_time(query.created_after) if query.created_after else "",
        before=shown_time(query.created_before) if query.created_before else "",
        statuses=list(Status),
        kinds=gw.routing.kinds,
        routes=[r.name for r in gw.routing.settings.routes],
        **said,
    )


# --- a task ------------------------------------------------------------------------------------


@router.get("/ui/tasks/{task_id}")
async def task_page(task_id: str, request: Request, session: Session = Depends(viewer)) -> Response:
    task = await _gateway(request).get(session.key, task_id)
    return await _task_page(request, session, task)


@router.get("/ui/tasks/{task_id}/live")
async def task_live(task_id: str, request: Request, session: Session = Depends(viewer)) -> Response:
    """The part of a task's page that changes while it runs (an htmx fragment)."""
    task = await _gateway(request).get(session.key, task_id)
    return page(request, "_task_live.html", session, **await _task(request, task))


@router.get("/ui/tasks/{task_id}/events")
async def task_events(
    task_id: str, request: Request, session: Session = Depends(viewer)
) -> StreamingResponse:
    """The task's events as the API streams them (server-sent events), for its page."""
    gw = _gateway(request)
    await gw.get(session.key, task_id)  # 404 before the stream starts
    return StreamingResponse(
        event_stream(gw, session.key, task_id),
        media_type="text/event-stream",
        headers={"cache-control": "no-store"},
    )


@router.post("/ui/tasks/{task_id}/cancel")
async def cancel(task_id: str, request: Request, session: Session = Depends(acting)) -> Response:
    gw = _gateway(request)
    task = await gw.cancel(session.key, task_id)
    if task.status is Status.CANCELLED:
        return await _task_page(request, session, task, notice="The task was cancelled.")
    said = f"The task had already ended ({task.status.value})."
    return await _task_page(request, session, task, error=said)


@router.post("/ui/tasks/{task_id}/retry")
async def retry(
    task_id: str, request: Request, session: Session = Depends(admin_acting)
) -> Response:
    gw = _gateway(request)
    try:
        task = await gw.control.retry(session.key, task_id)
    except ApiError as exc:
        if exc.status_code == 404:
            raise
        task = await gw.get(session.key, task_id)
        return await _task_page(request, session, task, error=exc.message)
    said = "The task will run again; its earlier attempts stay listed."
    return await _task_page(request, session, task, notice=said)


async def _task_page(request: Request, session: Session, task: Task, **said: str) -> Response:
    context = {**await _task(request, task), **said}
    return page(request, "task.html", session, **context)


async def _task(request: Request, task: Task) -> dict[str, Any]:
    """What a task's page shows of it: the API's view (attempts, position, webhook), its
    log, its input and result as they show, and which buttons it has."""
    gw = _gateway(request)
    return {
        "task": task,
        "view": await gw.view(task),
        "log": [{**e, "data_text": compact(e["data"])} for e in await gw.timeline(task)],
        "input": shown_input(task.input),
        "params": preview(task.params),
        "result": shown_result(task.result),
        "retryable": task.status in RETRYABLE,
    }


# --- files -----------------------------------------------------------------------------------


@router.get("/ui/files/{file_id}")
async def file(file_id: str, request: Request, session: Session = Depends(viewer)) -> Response:
    """A stored file of the viewer's tenant, as ``GET /v1/files/{id}`` serves it (the same
    headers keep it inert), for the pages' images and players."""
    f, data = await request.app.state.files.open(file_id, session.key.scope)
    return Response(data, media_type=clean_type(f.content_type), headers=download_headers(f))
