"""The app factory: internal API twice (gateway rewrite), public API, operations endpoints."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from wabapool.api import alerts, analytics, demo_webhooks, internal, public, spend_caps, statements, web
from wabapool.api.context import AppContext
from wabapool.api.errors import error_response, install_error_handlers
from wabapool.api.middleware import RequestContextMiddleware
from wabapool.api.observability import observe_request
from wabapool.api.request_rules import RequestRules
from wabapool.api.schemas.envelope import ErrorEnvelope, HealthOut
from wabapool.api.slow_clients import BodyReadTimeout
from wabapool.domain.json_types import JSONObject
from wabapool.metrics import render
from wabapool.runtime import configure_logging

INTERNAL_PREFIXES = ("/iag/v1", "/internal/qontak/billing/v1")
PUBLIC_PREFIX = "/api/core/v1"
WEB_DIST = Path(__file__).resolve().parent.parent / "web_dist"


def create_app(app_context: AppContext) -> FastAPI:
    """The app around its wired parts (`wabapool.bootstrap.create_app` builds them from the settings)."""
    configure_logging()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await app_context.close()

    app = FastAPI(
        title="wabapool",
        version="1.0.0",
        description="Shared balance pool billing for companies with several WhatsApp Business Accounts.",
        lifespan=lifespan,
        # A path with a trailing slash is a 404 in the envelope, never a redirect built from the request's Host.
        redirect_slashes=False,
    )
    app.state.context = app_context
    install_error_handlers(app)
    app.include_router(internal.router, prefix=INTERNAL_PREFIXES[0])
    # The gateway's rewrite of the same routes; distinct operation ids keep the document valid.
    app.include_router(
        internal.router,
        prefix=INTERNAL_PREFIXES[1],
        tags=["internal (gateway path)"],
        generate_unique_id_function=lambda route: f"gateway_{route.name}",
    )
    app.include_router(public.router, prefix=PUBLIC_PREFIX)
    app.include_router(alerts.router, prefix=PUBLIC_PREFIX)
    app.include_router(spend_caps.router, prefix=PUBLIC_PREFIX)
    app.include_router(statements.router, prefix=PUBLIC_PREFIX)
    app.include_router(analytics.router, prefix=PUBLIC_PREFIX)
    if app_context.demo_receiver:
        app.include_router(demo_webhooks.router)
    _add_operations(app, app_context)
    _document_validation_as_400(app)
    # Innermost first: RequestRules reads the body through the read timeout, inside the request context
    # (a bounded body, the request id on refusals).
    app.add_middleware(RequestRules)
    app.add_middleware(BodyReadTimeout, body_timeout_seconds=app_context.body_timeout_seconds)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=app_context.max_body_bytes, observe=observe_request)
    web.install_page(app, WEB_DIST)
    return app


def _document_validation_as_400(app: FastAPI) -> None:
    """Validation failures answer 400 in the envelope (errors.py), never FastAPI's 422 `{"detail": [...]}`.

    FastAPI still lists that 422 on every route with inputs; drop it so the document promises only what the
    app sends. A 422 a route declares itself (`not_shared_pool`, in the envelope) stays.
    """
    generate = app.openapi

    def openapi() -> JSONObject:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                schema = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
                if schema.get("$ref", "").endswith("/HTTPValidationError"):
                    del responses["422"]
        schemas = document.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _add_operations(app: FastAPI, context: AppContext) -> None:
    @app.get("/healthz", response_model=HealthOut, tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=HealthOut,
        tags=["operations"],
        responses={503: {"model": ErrorEnvelope, "description": "database unreachable"}},
    )
    async def readyz() -> JSONResponse:
        """The database answers."""
        if not await context.service.ready():
            return error_response(503, "unavailable", "the database is not reachable")
        return JSONResponse({"status": "ok"})

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    async def metrics() -> Response:
        """Prometheus metrics."""
        body, content_type = render()
        return Response(body, media_type=content_type)
