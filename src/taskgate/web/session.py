"""Logging in and out of the dashboard, and who is looking.

``POST /ui/login`` takes an API key (checked as the API checks it), opens a session in the
store and sets its token in a cookie that scripts cannot read (HttpOnly), that no other
site's page sends (SameSite=Strict) and, over HTTPS, that travels only over it (Secure).
:func:`viewer` is the pages' dependency: the session of the cookie, or a redirect to the
log-in page. :func:`acting` is the actions' (POST) dependency: it also wants the session's
CSRF token, from a form field or the ``X-CSRF-Token`` header htmx sends, and a same-origin
``Origin`` where the browser sends one. :func:`error_page` shows a page's error with the
viewer's navigation."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from taskgate.errors import ApiError, Forbidden, Unauthorized
from taskgate.store import SqlStore
from taskgate.store.sessions import Session
from taskgate.web.render import page

if TYPE_CHECKING:  # not at run time: the API's package imports this module
    from taskgate.api.auth import KeyRing

router = APIRouter(include_in_schema=False, tags=["ui"])

COOKIE = "taskgate_session"
LIFETIME = 12 * 3600.0  # seconds a session lasts


class LoginNeeded(Exception):
    """A page asked for without a live session: the app answers with the log-in page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def _store(request: Request) -> SqlStore:
    store: SqlStore = request.app.state.gateway.store
    return store


async def current(request: Request) -> Session | None:
    token = request.cookies.get(COOKIE)
    return await _store(request).sessions.get(token) if token else None


async def viewer(request: Request) -> Session:
    """The session looking at a page; else to the log-in page, and back here after."""
    session = await current(request)
    if session is None:
        raise LoginNeeded(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    return session


async def admin_viewer(request: Request) -> Session:
    session = await viewer(request)
    if not session.key.admin:
        raise Forbidden("this page needs an admin key")
    return session


async def acting(request: Request) -> Session:
    """The session making a change: a live one, sending its CSRF token, from this site."""
    session = await current(request)
    if session is None:
        raise Unauthorized("log in again: the session has ended")
    _same_origin(request)
    sent = request.headers.get("x-csrf-token")
    if sent is None and "form" in request.headers.get("content-type", ""):
        sent = str((await request.form()).get("csrf", ""))
    if sent != session.csrf:
        raise Forbidden("the request did not carry this session's CSRF token")
    return session


async def admin_acting(request: Request) -> Session:
    session = await acting(request)
    if not session.key.admin:
        raise Forbidden("this needs an admin key")
    return session


def _same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("a request from another site")


def _next(path: str | None) -> str:
    """Where to go after logging in: a dashboard path only (never another site)."""
    return path if path and path.startswith("/ui") and not path.startswith("//") else "/ui"


@router.get("/ui/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    return page(request, "login.html", None, next=_next(next))


@router.post("/ui/login")
async def login(request: Request, key: str = Form(""), next: str = Form("/ui")) -> Response:
    _same_origin(request)
    ring: KeyRing = request.app.state.keys
    try:
        found = await ring.verify(key.strip())
    except ApiError:
        return page(
            request, "login.html", None, 401, next=_next(next), error="That key is not valid."
        )
    token, _ = await _store(request).sessions.open(found, LIFETIME)
    response = RedirectResponse(_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(LIFETIME),
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/ui/logout")
async def logout(request: Request, _: Session = Depends(acting)) -> Response:
    token = request.cookies.get(COOKIE)
    if token:
        await _store(request).sessions.close(token)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


async def error_page(request: Request, exc: ApiError) -> HTMLResponse:
    """An error on a dashboard page, as a page (the API's errors stay JSON), with the
    viewer's navigation if they are logged in."""
    return page(
        request,
        "error.html",
        await current(request),
        exc.status_code,
        status=f"{exc.status_code} {exc.code.replace('_', ' ')}",
        message=exc.message,
    )


def login_redirect(exc: LoginNeeded) -> Response:
    return RedirectResponse(f"/ui/login?next={quote(exc.next_path)}", status_code=303)
