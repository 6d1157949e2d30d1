"""``POST /v1/admin/purge`` (admin keys): a purge run by hand, or counted (``dry_run``), of
the tasks that ended before a cutoff, with their attempts, logs, webhook deliveries and
files (``taskgate.ops.retention``). ``taskgate purge`` calls it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field, StrictFloat, StrictInt, StrictStr, field_validator, model_validator

from taskgate.api.auth import admin
from taskgate.api.native import Body
from taskgate.api.responses import JSON
from taskgate.api.schemas import ERRORS
from taskgate.api.strict import StrictRoute
from taskgate.config import Settings
from taskgate.models import ApiKey
from taskgate.ops import retention
from taskgate.store import Scope
from taskgate.views import iso

router = APIRouter(route_class=StrictRoute, responses=ERRORS)


class PurgeIn(Body):
    # strict: a destructive call takes no true for 1 second, nor "yes" for a dry run
    older_than: StrictStr | StrictInt | StrictFloat | None = Field(
        None,
        description="purge what ended longer ago than this: 30s, 10m, 12h, 7d, 2w or seconds",
    )
    before: datetime | None = Field(
        None, description="purge what ended before this time (ISO 8601, or epoch seconds)"
    )
    tenant: str | None = Field(None, min_length=1, max_length=64, description="only this tenant")
    dry_run: bool = Field(False, strict=True, description="count what would go; delete nothing")

    @field_validator("older_than")
    @classmethod
    def _an_age(cls, v: str | float | None) -> str | float | None:
        if v is not None:
            retention.parse_age(v)
        return v

    @model_validator(mode="after")
    def _one_cutoff(self) -> PurgeIn:
        if self.older_than is not None and self.before is not None:
            raise ValueError("give older_than or before, not both")
        return self

    def scopes(self, settings: Settings, now: float) -> list[Scope]:
        """The cutoff asked for; neither ``older_than`` nor ``before``: the configured one."""
        if self.older_than is not None:
            return [Scope(now - retention.parse_age(self.older_than), self.tenant)]
        if self.before is not None:
            when = self.before if self.before.tzinfo else self.before.replace(tzinfo=UTC)
            return [Scope(when.timestamp(), self.tenant)]
        return retention.scopes(settings.retention, now, self.tenant)


@router.post("/v1/admin/purge", tags=["admin"])
async def purge(body: PurgeIn, request: Request, _: ApiKey = Depends(admin)) -> JSON:
    """Delete the tasks that ended before the cutoff (``older_than`` ago, ``before`` a time,
    or by default the configured retention), with their attempts, logs, webhook deliveries,
    the batches they leave empty, and the files nothing kept names any more. Answers what
    went (with ``dry_run``: what would go) and each cutoff, by tenant (``*``: every other)."""
    settings: Settings = request.app.state.gateway.settings
    found = body.scopes(settings, time.time())
    purger: retention.Purger = request.app.state.purger
    purged = await purger.purge(found, body.dry_run)
    cutoffs: dict[str, Any] = {s.tenant or "*": iso(s.cutoff) for s in found}
    return JSON({"dry_run": body.dry_run, "cutoffs": cutoffs, **purged.as_dict()})
