"""The task list's filters as the dashboard carries them: read from the list's query (a GET
form) or from a bulk action's form, checked, and turned into what the store takes (a
:class:`TaskFilter` for the list, a :class:`Selection` for retry and cancel) and back into
the query of the next page's link and the bulk forms' fields. Pure: no request, no store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace
from urllib.parse import urlencode

from taskgate.errors import BadRequest
from taskgate.models import Status
from taskgate.store import TaskFilter
from taskgate.store.control import Selection

PAGE = 50  # tasks a page of the list shows

# the longest text each filter takes (as the API's bulk selection takes them)
LONGEST = {"kind": 32, "model": 200, "route": 100, "tenant": 64, "cursor": 64}


@dataclass(frozen=True, slots=True)
class ListQuery:
    """What the list shows: the filters (empty: not filtering) and the page's cursor."""

    statuses: tuple[Status, ...] = ()
    kind: str = ""
    model: str = ""
    route: str = ""
    tenant: str = ""
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    cursor: str = ""

    @classmethod
    def parse(cls, pairs: Iterable[tuple[str, object]], admin: bool) -> ListQuery:
        """From a query's or a form's fields (repeated ``status``); 400 naming a bad one.
        Only an admin filters by tenant (a tenant key sees its own tenant's tasks only)."""
        statuses: list[Status] = []
        text: dict[str, str] = {}
        for name, raw in pairs:
            value = raw.strip() if isinstance(raw, str) else ""
            if name == "status" and value:
                statuses.append(_status(value))
            elif name in LONGEST or name in ("created_after", "created_before"):
                text[name] = value
        for name, longest in LONGEST.items():
            if len(text.get(name, "")) > longest:
                raise BadRequest(f"'{name}' is longer than {longest} characters", field=name)
        return cls(
            statuses=tuple(dict.fromkeys(statuses)),
            kind=text.get("kind", ""),
            model=text.get("model", ""),
            route=text.get("route", ""),
            tenant=text.get("tenant", "") if admin else "",
            created_after=_time("created_after", text.get("created_after", "")),
            created_before=_time("created_before", text.get("created_before", "")),
            cursor=text.get("cursor", ""),
        )

    @property
    def filtering(self) -> bool:
        """Whether any filter is set (a bulk action needs one)."""
        return bool(self.fields())

    def task_filter(self, limit: int = PAGE + 1) -> TaskFilter:
        """The store's filter for this page (one more task than a page: is there a next?)."""
        return TaskFilter(
            tenant=self.tenant or None,
            statuses=self.statuses,
            kind=self.kind or None,
            model=self.model or None,
            route=self.route or None,
            created_after=self.created_after.timestamp() if self.created_after else None,
            created_before=self.created_before.timestamp() if self.created_before else None,
            before_id=self.cursor or None,
            limit=limit,
        )

    def selection(self) -> Selection:
        """The tasks a bulk action takes: every task of the filters, not just this page."""
        return Selection(replace(self.task_filter(), before_id=None), route=self.route or None)

    def fields(self) -> list[tuple[str, str]]:
        """The filters as form fields, as the list's form sends them (no cursor)."""
        out = [("status", s.value) for s in self.statuses]
        out += [(n, v) for n in ("kind", "model", "route", "tenant") if (v := getattr(self, n))]
        for name in ("created_after", "created_before"):
            if (when := getattr(self, name)) is not None:
                out.append((name, shown_time(when)))
        return out

    def first_page(self) -> str:
        """The query of the first page (the newest tasks) of these filters."""
        return urlencode(self.fields())

    def next_page(self, cursor: str) -> str:
        """The query of the page after this one, which ends with task ``cursor``."""
        return urlencode([*self.fields(), ("cursor", cursor)])


def shown_time(when: dt.datetime) -> str:
    """A time as a ``datetime-local`` input shows it (UTC, to the second)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _status(value: str) -> Status:
    try:
        return Status(value.upper())
    except ValueError:
        known = ", ".join(s.value for s in Status)
        raise BadRequest(f"unknown status {value!r}; statuses: {known}", field="status") from None


def _time(name: str, value: str) -> dt.datetime | None:
    """A time from a ``datetime-local`` input (UTC) or ISO 8601 text with a zone."""
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"'{name}' is not a time: {value[:40]!r} (give 2026-11-29T08:14, UTC)", field=name
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
