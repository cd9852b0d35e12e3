"""``/docs`` (Swagger UI) from files shipped with the package, not from a CDN.

FastAPI's own ``/docs`` page loads Swagger UI's script and stylesheet from a CDN, so it
is blank on a machine without internet access, which is where a service like this often
runs. ``swagger-ui-bundle`` (part of the ``api`` extra) ships those files; they are
served under ``ASSETS`` and the page is FastAPI's own HTML pointed at them (FastAPI's
documented offline recipe). Both are plain Starlette routes: like ``/openapi.json``
they need no token, since the page only shows the published schema.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS = "/docs"
ASSETS = "/docs-assets"


def serve_docs_offline(app: FastAPI) -> None:
    """Serve Swagger UI at ``DOCS`` with its files under ``ASSETS``; ``app`` has docs_url=None."""
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-ui-assets")

    def swagger_ui(request: Request) -> HTMLResponse:
        # Under a mount (the daemon serves the API at its root, a proxy may add a prefix)
        # the page's URLs must carry the prefix the request came in with.
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title}: API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
        )

    app.add_route(DOCS, swagger_ui, include_in_schema=False)
