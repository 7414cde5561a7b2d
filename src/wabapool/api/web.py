"""The built Package Usage page: `index.html` at `/` and `/package-usage` (never cached), hashed assets for a year.

Vite names every asset after its content hash, so `/assets/*` can be cached as immutable; the HTML that points
at them must be revalidated on every load or a deploy would leave browsers on the old hashes.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from wabapool.api.errors import error_response

PAGE_PATHS = ("/", "/package-usage")
ASSETS_CACHE_CONTROL = "public, max-age=31536000, immutable"
HTML_HEADERS = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Everything the page loads and calls is same-origin; the CSV download is a blob: URL. No site may frame
    # the page (clickjacking the download or the preferences): `frame-ancestors`, and X-Frame-Options for
    # browsers that predate it.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
}


class ImmutableAssets(StaticFiles):
    """Static files with the long-lived cache header (the names are content hashes)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = ASSETS_CACHE_CONTROL
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install_page(app: FastAPI, dist: Path) -> None:
    """Serve the build in `dist` (the page answers 404 in the envelope until it has been built)."""
    router = APIRouter(include_in_schema=False)

    async def page() -> Response:
        index = dist / "index.html"
        if not index.is_file():
            return error_response(404, "not_found", "the page is not built: run scripts/install.sh")
        return FileResponse(index, media_type="text/html; charset=utf-8", headers=HTML_HEADERS)

    for path in PAGE_PATHS:
        router.add_api_route(path, page, methods=["GET", "HEAD"])
    app.include_router(router)
    app.mount("/assets", ImmutableAssets(directory=dist / "assets", check_dir=False), name="web-assets")
