"""A tenant's webhooks as the API sees them: where a submission's ``webhook_url`` may point,
the secret that signs the tenant's webhooks, and the deliveries shown with a task or batch.
Sending them is webhooks.py's; the outbox rows are store/outbox.py's."""

from __future__ import annotations

from typing import Any

from taskgate import netguard
from taskgate.config import WebhookSettings
from taskgate.errors import BadRequest
from taskgate.models import ApiKey
from taskgate.store import SqlStore
from taskgate.store.outbox import Delivery
from taskgate.views import iso


class TenantWebhooks:
    def __init__(self, settings: WebhookSettings, store: SqlStore) -> None:
        self.store = store
        self.guard = netguard.guard_of(settings)  # where webhook URLs may point

    async def check_url(self, url: str | None) -> None:
        """A webhook URL must be http(s) and lead to an address the config allows."""
        if url is None:
            return
        try:
            await self.guard.check_url(url)
        except netguard.Refused as exc:
            raise BadRequest(f"webhook_url refused: {exc}", field="webhook_url") from None

    async def secret(self, key: ApiKey, rotate: bool = False) -> str:
        """The secret that signs the webhooks of the key's tenant (made on first need).
        Rotating takes effect from the next attempt of every delivery."""
        if rotate:
            return await self.store.outbox.rotate_secret(key.tenant)
        return await self.store.outbox.secret(key.tenant)

    async def view(
        self, url: str, *, task_id: str | None = None, batch_id: str | None = None
    ) -> dict[str, Any]:
        """The webhook of a task or a batch, with its deliveries, as the native API shows it."""
        deliveries = await self.store.outbox.of(task_id=task_id, batch_id=batch_id)
        return webhook_json(url, deliveries)


def webhook_json(url: str, deliveries: list[Delivery]) -> dict[str, Any]:
    return {"url": url, "deliveries": [delivery_json(d) for d in deliveries]}


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "event_id": d.event_id,
        "type": d.payload.get("type"),
        "status": d.status,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": iso(d.created_at),
        "next_attempt_at": iso(d.next_attempt_at) if d.status == "PENDING" else None,
        "delivered_at": iso(d.updated_at) if d.status == "DELIVERED" else None,
    }
