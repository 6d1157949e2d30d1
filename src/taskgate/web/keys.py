"""The keys page (admin keys): every key with its tenant, role, state, prefix and limits; a
form that creates one and shows its secret this once; a Revoke button per active key and a
form that changes its limits. The same calls as ``POST``, ``DELETE`` and ``PATCH
/v1/keys``: revoking and changing go through the ``KeyRing``, which announces them, so every
gateway drops the key from its cache at once. No secret or hash is shown anywhere else."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from taskgate.api.auth import KeyRing
from taskgate.api.native import KeyIn, LimitsIn
from taskgate.config import Limits
from taskgate.store import SqlStore
from taskgate.store.sessions import Session
from taskgate.web.render import page
from taskgate.web.session import admin_acting, admin_viewer

router = APIRouter(include_in_schema=False, tags=["ui"])

LIMITS = {
    "requests_per_minute": "requests per minute",
    "tokens_per_day": "tokens per day",
    "cost_per_month": "cost per month",
}
FIELDS = {"tenant": "tenant", "name": "name", **LIMITS}
M = TypeVar("M", KeyIn, LimitsIn)


class FormError(Exception):
    """A form's field that does not hold: said on the page, with 400."""


async def _page(
    request: Request, session: Session, status_code: int = 200, **said: Any
) -> Response:
    store: SqlStore = request.app.state.gateway.store
    tenant = request.query_params.get("tenant") or None
    keys = list(reversed(await store.keys.find(tenant)))  # newest first
    return page(request, "keys.html", session, status_code, keys=keys, tenant=tenant, **said)


def _ring(request: Request) -> KeyRing:
    ring: KeyRing = request.app.state.keys
    return ring


@router.get("/ui/keys")
async def keys(request: Request, session: Session = Depends(admin_viewer)) -> Response:
    return await _page(request, session)


@router.post("/ui/keys")
async def create(request: Request, session: Session = Depends(admin_acting)) -> Response:
    """A new key; its secret is on this answer only (never cached)."""
    form = await request.form()
    try:
        body = _checked(KeyIn, _key_fields(form))
    except FormError as exc:
        return await _page(request, session, 400, error=str(exc), form=form)
    limits = Limits(**body.limits.changes()) if body.limits else None
    store: SqlStore = request.app.state.gateway.store
    key, secret = await store.keys.create(body.tenant, body.name, body.admin, limits)
    response = await _page(request, session, 201, created=key, secret=secret)
    response.headers["cache-control"] = "no-store"
    return response


@router.post("/ui/keys/{key_id}/revoke")
async def revoke(
    key_id: str, request: Request, session: Session = Depends(admin_acting)
) -> Response:
    if not await _ring(request).revoke(key_id):
        return await _page(request, session, 404, error=f"There is no active key {key_id}.")
    return await _page(request, session, notice=f"Key {key_id} is revoked.")


@router.post("/ui/keys/{key_id}/limits")
async def set_limits(
    key_id: str, request: Request, session: Session = Depends(admin_acting)
) -> Response:
    """Set a key's three limits as the form has them (an empty field: no limit)."""
    try:
        limits = _checked(LimitsIn, _limit_fields(await request.form()))
    except FormError as exc:
        return await _page(request, session, 400, error=str(exc))
    if await _ring(request).set_limits(key_id, limits.changes()) is None:
        return await _page(request, session, 404, error=f"There is no active key {key_id}.")
    return await _page(request, session, notice=f"The limits of key {key_id} are changed.")


def _limit_fields(form: FormData) -> dict[str, str | None]:
    """Each limit the form names; an empty field is none."""
    return {name: str(form.get(name, "")).strip() or None for name in LIMITS}


def _key_fields(form: FormData) -> dict[str, Any]:
    limits = {n: v for n, v in _limit_fields(form).items() if v is not None}
    return {
        "tenant": str(form.get("tenant", "")).strip(),
        "name": str(form.get("name", "")).strip(),
        "admin": form.get("admin") is not None,
        "limits": limits or None,
    }


def _checked(model: type[M], fields: dict[str, Any]) -> M:
    """The form's fields as the API's body model, or what is wrong with the first that
    does not hold, named as the form names it."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = next((str(p) for p in reversed(first["loc"]) if str(p) in FIELDS), "")
        raise FormError(f"{FIELDS.get(field, 'the form')}: {first['msg']}") from exc
