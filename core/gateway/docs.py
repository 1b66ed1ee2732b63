"""The /docs page: Swagger UI from the swagger-ui-py package's bundled assets (no CDN)."""

from __future__ import annotations

import html
import importlib.util
import json
import os

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{static}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{static}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: {spec}, dom_id: "#swagger-ui", deepLinking: true}});
</script>
</body>
</html>
"""


def swagger_static_dir() -> str:
    """swagger_ui/static of the installed package, located without importing it (slow import)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise RuntimeError("the swagger-ui-py package is not installed")
    path = os.path.join(os.path.dirname(spec.origin), "static")
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        if not os.path.isfile(os.path.join(path, name)):
            raise RuntimeError(f"swagger-ui-py has no static/{name} at {path}")
    return path


def docs_routes(docs_path: str, openapi_path: str | None, title: str) -> list[BaseRoute]:
    """GET {docs_path} (the page) and {docs_path}/static/* (the bundled assets)."""
    static_dir = swagger_static_dir()

    async def page(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return HTMLResponse(
            _PAGE.format(
                title=html.escape(f"{title} - API docs"),
                static=html.escape(root + docs_path + "/static"),
                # json.dumps + escaping "<" keeps the URL a plain JS string literal.
                spec=json.dumps(root + (openapi_path or "")).replace("<", "\\u003c"),
            )
        )

    return [
        Route(docs_path, page, methods=["GET"]),
        Mount(docs_path + "/static", app=StaticFiles(directory=static_dir)),
    ]
