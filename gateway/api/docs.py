"""`/docs`: Swagger UI over `/openapi.json`, served from files vendored in the package
(swagger-ui-dist, pinned; see static/swagger-ui/package.json and its LICENSE), so the page loads
nothing from elsewhere.

The page runs under its own CSP: scripts from this origin only (the bundle and our init file; no
inline script), requests to this origin only (the document and "Try it out"). Swagger UI's
stylesheet is a file too; its inline SVG icons need `img-src data:`.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.api.openapi import operation, path_param

STATIC = Path(__file__).resolve().parent / "static"
# The files the page loads, by the name it asks for.
FILES = {
    "swagger-ui-bundle.js": (STATIC / "swagger-ui" / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": (STATIC / "swagger-ui" / "swagger-ui.css", "text/css"),
    "docs-init.js": (STATIC / "docs-init.js", "text/javascript"),
    "LICENSE": (STATIC / "swagger-ui" / "LICENSE", "text/plain"),
}
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_FILE = path_param("file", {"type": "string", "enum": sorted(FILES)}, "one of the page's files")
TAG = "service"


@operation("This document, in Swagger UI", tag=TAG, ok={"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}, public=True)
async def docs(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "docs.html", headers={"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": DOCS_CSP})


@operation("A file of the /docs page (Swagger UI's bundle and stylesheet, our init script)", tag=TAG, ok={"200": {"description": "the file"}}, errors=(404,), parameters=(_FILE,), public=True)
async def docs_file(request: web.Request) -> web.FileResponse:
    found = FILES.get(request.match_info["file"])
    if found is None:
        raise web.HTTPNotFound()
    path, content_type = found
    return web.FileResponse(path, headers={"Content-Type": f"{content_type}; charset=utf-8", "Cache-Control": "public, max-age=3600"})
