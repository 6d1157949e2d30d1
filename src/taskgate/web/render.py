"""Rendering pages: the Jinja2 environment (templates in ``templates/``, autoescaped), the
filters they use, and :func:`page`, which gives every page what the layout needs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from taskgate.store.sessions import Session

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))


def _when(value: Any) -> str:
    """A time (epoch seconds or ISO text) as ``2026-11-29 08:14:59`` UTC; ``-`` for none."""
    if value in (None, ""):
        return "-"
    if isinstance(value, str):
        return value.replace("T", " ")[:19]
    return dt.datetime.fromtimestamp(float(value), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value)
    return f"{value:.2f} s" if value < 60 else f"{value / 60:.1f} min"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


templates.env.filters.update(when=_when, seconds=_seconds, pretty=_pretty)


def _money(value: Any) -> str:
    """A cost as people read one: ``1,234.5``, ``0.000012``; ``-`` for none."""
    if value is None:
        return "-"
    text = f"{float(value):,.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _number(value: Any) -> str:
    """A count with thousands apart (``12,345``), a fractional number as a cost."""
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else _money(value)


templates.env.filters.update(money=_money, number=_number)


def page(
    request: Request,
    template: str,
    session: Session | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page (or a fragment, for htmx) with the viewer's session, key and CSRF token."""
    return templates.TemplateResponse(
        request,
        template,
        {"session": session, "key": session.key if session else None, **context},
        status_code=status_code,
    )
