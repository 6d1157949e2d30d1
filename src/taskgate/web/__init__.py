"""The dashboard at ``/ui``: pages rendered on the server from the same calls the API makes
(``Gateway``, ``control``, ``ops``), with htmx (shipped in ``static/``, never from a CDN) for
the parts that refresh themselves and the buttons. Log-in is with an API key; the session
lives in an HttpOnly, SameSite=Strict cookie, and every action carries the session's CSRF
token (``session.py``). A tenant key sees its tenant's tasks and none of the admin pages.

Pages are grouped by what they show: ``overview.py`` (routes, instances, workers, the
per-minute chart), ``routes.py`` (pause, resume, reload), ``tasks.py`` (the list and its bulk
actions, a task and its buttons, the files of results; how a filter and a task show are in
``listing.py`` and ``shown.py``), ``batches.py`` (a batch, the conversations), ``keys.py``
(create, revoke, limits), ``usage.py`` (usage and cost with a chart, the limits in force and
what is used of them)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")


def routers() -> list[APIRouter]:
    """Every page's router."""
    from taskgate.web import batches, keys, overview, routes, session, tasks, usage

    return [
        session.router,
        overview.router,
        routes.router,
        tasks.router,
        batches.router,
        keys.router,
        usage.router,
    ]


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC)
