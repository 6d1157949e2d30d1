"""The API's documentation: ``/docs`` (Swagger UI), served from files installed with
taskgate, and the bearer scheme of ``/openapi.json``.

The page loads nothing from another origin, so it works offline: Swagger UI's files come
from the ``fastapi-offline`` package (MIT; it ships Swagger UI 5, which reads the OpenAPI
3.1 that FastAPI writes; ``swagger-ui-bundle`` ships Swagger UI 4, which refuses it), under
``/docs/static/``, cached for a year (their URLs carry the package's version), and the page's
Content-Security-Policy holds the browser to its own origin. Every URL it names is
root-relative, under the proxy's prefix (``root_path``) when there is one. There is no
``/redoc``: ReDoc always loads its maker's logo from their CDN.

Which operations need a key is read from the routes themselves: one that depends on
``auth.caller`` or ``auth.admin`` (directly or through another dependency) carries the
bearer scheme, so the Authorize button's key goes out as ``Authorization: Bearer <key>``; a
route that checks the key in its own body says so in its ``openapi_extra``
(``auth.KEY_NEEDED``, ``auth.KEY_OPTIONAL``). Nothing of this runs on a request but the
pages' own.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.routing import APIRoute, APIRouter
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from taskgate.api.auth import KEY_CHECKS, SCHEME

ASSETS = "fastapi_offline"  # the package whose static/ folder holds Swagger UI's files
STATIC = "/docs/static"
CACHE = "public, max-age=31536000, immutable"
# the page runs one inline script of its own: Swagger UI's set-up
POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'self'; form-action 'self'; base-uri 'none'"
)
BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "A taskgate API key (`taskgate keys create`). It may also be sent as "
    "`X-Api-Key: <key>`.",
}


class Assets(StaticFiles):
    """Swagger UI's files, cached for long: their URLs change with the package's version."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["cache-control"] = CACHE
        return response


def install(app: FastAPI, routers: list[APIRouter]) -> None:
    """Serve ``/docs`` from the package's files, and mark in ``app``'s OpenAPI document the
    operations of ``routers`` (every router ``app`` includes, and its own) that need a key.
    ``app`` is made with ``docs_url`` and ``redoc_url`` None."""
    app.mount(STATIC, Assets(packages=[(ASSETS, "static")]), name="docs-static")
    assets = f"{STATIC}/{{name}}?v={version(ASSETS.replace('_', '-'))}"

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=root + assets.format(name="swagger-ui-bundle.js"),
            swagger_css_url=root + assets.format(name="swagger-ui.css"),
            swagger_favicon_url=root + assets.format(name="favicon.png"),
            swagger_ui_parameters={"validatorUrl": None},  # no badge from validator.swagger.io
        )
        page.headers["content-security-policy"] = POLICY
        return page

    document = app.openapi  # FastAPI's: made once, and again if the routes change

    def openapi() -> dict[str, Any]:
        doc = document()
        if SCHEME not in doc.get("components", {}).get("securitySchemes", {}):
            add_security(doc, [r for router in routers for r in router.routes])
        return doc

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way


def add_security(doc: dict[str, Any], routes: list[BaseRoute]) -> None:
    """Add the bearer scheme to ``doc``, required by every operation whose route checks a
    key through its dependencies (one that declares its own ``security`` keeps it)."""
    doc.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = BEARER
    for route in routes:
        if isinstance(route, APIRoute) and route.include_in_schema and checks_key(route.dependant):
            for method in route.methods or ():
                operation = doc["paths"][route.path_format][method.lower()]
                operation.setdefault("security", [{SCHEME: []}])


def checks_key(dependant: Dependant) -> bool:
    """Whether the route (or dependency) ``dependant`` depends on a key check."""
    return any(d.call in KEY_CHECKS or checks_key(d) for d in dependant.dependencies)
