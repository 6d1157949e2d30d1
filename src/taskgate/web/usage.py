"""The usage page (admin keys): the tasks, tokens and cost of a time range by tenant, key,
model or UTC day, as ``GET /v1/usage`` sums them, in a table with its total and a bar chart
drawn here as SVG; and the limits in force, the tenants' (``limits.tenants`` of the settings
the gateway serves by now, so a reload shows) and the keys', with what each has used as its
counter in the store says (a counter is made at the first request held to a limit)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast, get_args

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from taskgate.api.usage import usage_json
from taskgate.budgets import DAY, Counter, month_of, month_start
from taskgate.config import Limits
from taskgate.errors import BadRequest
from taskgate.gateway import Gateway
from taskgate.models import ApiKey
from taskgate.store.sessions import Session
from taskgate.store.usage import GroupBy
from taskgate.web.render import page
from taskgate.web.session import admin_viewer

router = APIRouter(include_in_schema=False, tags=["ui"])

MEASURES = ("cost", "tasks", "tokens")
CHART_BARS = 40  # the largest groups drawn (every day of a range, in order, up to as many)
CHART_W, LABEL_W, BAR_H = 640, 200, 18
LABEL_CHARS = 28


@router.get("/ui/usage")
async def usage(request: Request, session: Session = Depends(admin_viewer)) -> Response:
    asked = {n: request.query_params.get(n, "").strip() for n in ("from", "to", "tenant")}
    group_by = request.query_params.get("group_by") or "tenant"
    measure = request.query_params.get("measure") or "cost"
    form = {**asked, "group_by": group_by, "measure": measure}
    gw: Gateway = request.app.state.gateway
    keys = await gw.store.keys.find(asked["tenant"] or None)
    limits = await limits_in_force(gw, keys, asked["tenant"] or None)
    try:
        report = await _report(gw, group_by, measure, asked, {k.id: k for k in keys})
    except BadRequest as exc:
        return page(
            request, "usage.html", session, 400, form=form, limits=limits, error=exc.message
        )
    return page(request, "usage.html", session, form=form, limits=limits, **report)


async def _report(
    gw: Gateway, group_by: str, measure: str, asked: dict[str, str], keys: dict[str, ApiKey]
) -> dict[str, Any]:
    if group_by not in get_args(GroupBy):
        raise BadRequest("group by tenant, key, model or day")
    if measure not in MEASURES:
        raise BadRequest("chart the cost, the tasks or the tokens")
    now = time.time()
    start = moment(asked["from"], "from") or month_start(month_of(now))
    end = moment(asked["to"], "to", end_of_day=True) or now
    if start >= end:
        raise BadRequest("'from' must come before 'to'")
    tenant, grouped = asked["tenant"] or None, cast(GroupBy, group_by)
    data = await gw.store.usage.report(grouped, start, end, tenant)
    report = usage_json(grouped, start, end, tenant, data)
    for row in report["data"]:
        row["tokens"] = row["input_tokens"] + row["output_tokens"]
        key = keys.get(row["group"]) if group_by == "key" else None
        row["label"] = f"{row['group']} ({key.tenant}/{key.name})" if key and key.name else None
    chart = bars(report["data"], measure, keep_order=group_by == "day")
    return {"report": report, "chart": chart, "start": start, "end": end}


def moment(text: str, field: str, end_of_day: bool = False) -> float | None:
    """A form's date (``YYYY-MM-DD``, the whole day for ``to``) or ISO time (UTC if no zone
    is given) as a timestamp; None for none."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"'{field}' is not a date (YYYY-MM-DD) or an ISO time") from None
    stamp = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    return stamp + DAY if end_of_day and len(text) == 10 else stamp


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float
    y: int
    width: float

    @property
    def short(self) -> str:
        """The label as the chart has room for it."""
        return self.label if len(self.label) <= LABEL_CHARS else self.label[: LABEL_CHARS - 1] + "…"


def bars(rows: list[dict[str, Any]], measure: str, keep_order: bool = False) -> dict[str, Any]:
    """A horizontal bar per group (the largest :data:`CHART_BARS`; days in their order,
    the latest ones), scaled to the largest, for an SVG ``CHART_W`` wide."""
    if keep_order:
        chosen = rows[-CHART_BARS:]
    else:
        chosen = sorted(rows, key=lambda r: r[measure], reverse=True)[:CHART_BARS]
    top = max((float(r[measure]) for r in chosen), default=0.0) or 1.0
    room = CHART_W - LABEL_W - 90  # the value is written after its bar
    drawn = [
        Bar(str(r["group"]), r[measure], i * (BAR_H + 4), float(r[measure]) / top * room)
        for i, r in enumerate(chosen)
    ]
    return {
        "bars": drawn,
        "measure": measure,
        "left_out": len(rows) - len(chosen),
        "width": CHART_W,
        "label_width": LABEL_W,
        "bar_height": BAR_H,
        "height": max(1, len(drawn)) * (BAR_H + 4),
    }


@dataclass(frozen=True, slots=True)
class Standing:
    """One key's or tenant's limits, and what it used of each (None: not counted yet)."""

    who: str
    tenant: str
    name: str
    limits: Limits
    requests: int | None
    tokens: int | None
    cost: float | None


async def limits_in_force(gw: Gateway, keys: list[ApiKey], tenant: str | None) -> dict[str, Any]:
    """The tenants' limits (the settings served now) and the active keys' that have any,
    each with its counter's standing."""
    tenants = {
        name: limits
        for name, limits in sorted(gw.settings.limits.tenants.items())
        if tenant is None or name == tenant
    }
    limited = [k for k in keys if k.active and _limits_of(k) != Limits()]
    subjects = [f"tenant:{t}" for t in tenants] + [f"key:{k.id}" for k in limited]
    counters = await gw.store.usage.counters(subjects)
    now = time.time()
    return {
        "tenants": [
            standing(t, t, "", lim, counters.get(f"tenant:{t}"), now) for t, lim in tenants.items()
        ],
        "keys": [
            standing(k.id, k.tenant, k.name, _limits_of(k), counters.get(f"key:{k.id}"), now)
            for k in limited
        ],
    }


def standing(
    who: str, tenant: str, name: str, limits: Limits, counter: Counter | None, now: float
) -> Standing:
    """``who``'s limits and what it used of them as of ``now``."""
    if counter is None:
        return Standing(who, tenant, name, limits, None, None, None)
    requests, tokens, cost = counter.used(limits.requests_per_minute, now)
    return Standing(who, tenant, name, limits, requests, tokens, cost)


def _limits_of(key: ApiKey) -> Limits:
    return Limits(
        requests_per_minute=key.requests_per_minute,
        tokens_per_day=key.tokens_per_day,
        cost_per_month=key.cost_per_month,
    )
