"""Listing tasks through the gateway (what ``GET /v1/tasks`` and the dashboard's list call),
on SQLite and PostgreSQL: a tenant key sees its own tenant whatever the filter names; an
admin key sees every tenant, or the one its filter names; the filter takes a route."""

from __future__ import annotations

from taskgate.config import Settings
from taskgate.events.memory import MemoryEvents
from taskgate.gateway import Gateway
from taskgate.models import ApiKey, Task
from taskgate.store import SqlStore, TaskFilter
from tests.integration.test_store import add

ADMIN = ApiKey(id="a", tenant="ops", name="a", admin=True, created_at=0)
ACME = ApiKey(id="k", tenant="acme", name="k", admin=False, created_at=0)


def ids(tasks: list[Task]) -> set[str]:
    return {t.id for t in tasks}


async def test_a_tenant_key_lists_its_tenant_and_an_admin_any(store: SqlStore) -> None:
    gw = Gateway(Settings(), store, MemoryEvents())
    acme = await add(store, 2, tenant="acme")
    other = await add(store, 1, tenant="other")
    everything = TaskFilter(tenant=None)
    assert ids(await gw.list_tasks(ACME, everything)) == ids(acme)
    assert ids(await gw.list_tasks(ACME, TaskFilter(tenant="other"))) == ids(acme)
    assert ids(await gw.list_tasks(ADMIN, everything)) == ids(acme + other)
    assert ids(await gw.list_tasks(ADMIN, TaskFilter(tenant="other"))) == ids(other)


async def test_the_list_filters_by_route(store: SqlStore) -> None:
    gw = Gateway(Settings(), store, MemoryEvents())
    here = await add(store, 2, tenant="acme", route="here")
    await add(store, 1, tenant="acme", route="there")
    assert ids(await gw.list_tasks(ACME, TaskFilter(tenant=None, route="here"))) == ids(here)
    assert await gw.list_tasks(ACME, TaskFilter(tenant=None, route="nowhere")) == []
