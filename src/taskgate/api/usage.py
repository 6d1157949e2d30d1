"""``GET /v1/usage``: the tokens and cost of tasks created in a time range, by tenant, key,
model or day. Tenant keys see their own tenant's; admin keys every tenant's, or one's."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query

from taskgate.api.auth import caller, gateway
from taskgate.api.responses import JSON
from taskgate.api.schemas import ERRORS
from taskgate.api.strict import StrictRoute
from taskgate.budgets import month_of, month_start
from taskgate.errors import BadRequest, Forbidden
from taskgate.gateway import Gateway
from taskgate.models import ApiKey
from taskgate.store.usage import GroupBy
from taskgate.views import iso

router = APIRouter(route_class=StrictRoute, responses=ERRORS)

SUMS = ("tasks", "input_tokens", "output_tokens", "cost")


@router.get("/v1/usage", tags=["usage"])
async def usage(
    group_by: Literal["tenant", "key", "model", "day"] = "tenant",
    from_: datetime | None = Query(
        None,
        alias="from",
        description="from this time (ISO 8601; UTC if no zone is given); "
        "by default the start of the current UTC month",
    ),
    to: datetime | None = Query(None, description="until this time (excluded); by default now"),
    tenant: str | None = Query(None, max_length=64, description="one tenant's (admin keys)"),
    key: ApiKey = Depends(caller),
    gw: Gateway = Depends(gateway),
) -> JSON:
    """Tasks created in [from, to), grouped by tenant, key id, model or UTC day
    (``YYYY-MM-DD``): how many, their input and output tokens and their cost (by the
    configured prices, when their attempts ended), with the totals."""
    now = time.time()
    start = _timestamp(from_) if from_ else month_start(month_of(now))
    end = _timestamp(to) if to else now
    if start >= end:
        raise BadRequest("'from' must come before 'to'", field="from")
    scope = _scope(key, tenant)
    data = await gw.store.usage.report(group_by, start, end, scope)
    return JSON(usage_json(group_by, start, end, scope, data))


def _scope(key: ApiKey, tenant: str | None) -> str | None:
    """The tenant whose usage is shown (None: every tenant's)."""
    if key.admin:
        return tenant
    if tenant is not None and tenant != key.tenant:
        raise Forbidden("a tenant key sees only its own tenant's usage")
    return key.tenant


def _timestamp(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def usage_json(
    group_by: GroupBy, start: float, end: float, tenant: str | None, data: list[dict[str, Any]]
) -> dict[str, Any]:
    """The report as ``GET /v1/usage`` answers it: each group's sums, and their totals."""
    total: dict[str, Any] = {name: sum(row[name] for row in data) for name in SUMS}
    for row in [*data, total]:
        row["cost"] = round(float(row["cost"]), 10)
    return {
        "group_by": group_by,
        "from": iso(start),
        "to": iso(end),
        "tenant": tenant,
        "data": data,
        "total": total,
    }
