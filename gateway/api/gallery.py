"""The gallery: a browser front-end at `/gallery`, static files from the package.

The page talks only to the public API with the caller's own credentials; the server keeps no
state for it. Its Content-Security-Policy is decided here, in `page_policy`, and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from yarl import URL

from gateway.api.common import origin
from gateway.api.openapi import operation, path_param
from gateway.errors import NotFound
from gateway.keys import BLOBS

STATIC = Path(__file__).resolve().parent.parent / "gallery" / "static"
# Every file the gallery serves, by its path under STATIC, fixed at import: a request names one
# of these or gets 404, so no request path ever reaches the filesystem.
FILES = {path.relative_to(STATIC).as_posix(): path for path in STATIC.rglob("*") if path.is_file() and path.name != "index.html"}
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png", ".txt": "text/plain"}
# Revalidated on every load (the ETag makes that a 304), so an upgraded gateway's files are used at once.
_CACHE = {"Cache-Control": "no-cache"}


async def _object_origin(request: web.Request) -> str | None:
    """The origin presigned downloads point at, when it is not the gateway's own (S3, MinIO):
    images are drawn from there after the gateway's redirect. Signing is local computation."""
    url = URL(await request.app[BLOBS].presign("gallery/000000000000000000000000.jpg", ttl=60, content_type="image/jpeg", filename="x.jpg"))
    if not url.is_absolute():
        return None
    found = str(url.origin())
    return None if found == str(origin(request)) else found


async def page_policy(request: web.Request) -> str:
    """Scripts and styles from the gallery's own files only; images and API calls to the gateway
    and to the object store its downloads redirect to; nothing framed, posted or embedded."""
    own = origin(request)
    socket = str(own.with_scheme("wss" if own.scheme == "https" else "ws"))
    objects = await _object_origin(request)
    extra = f" {objects}" if objects else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' blob:{extra}; connect-src 'self' {socket}{extra}; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


_HTML = {"200": {"description": "the gallery page", "content": {"text/html": {"schema": {"type": "string"}}}}}
_NAME = path_param("name", {"type": "string"}, "a file of the gallery (its scripts, style sheet, icon, vendored tus-js-client)")


@operation("The gallery: browse, upload, edit and delete images in a browser", tag="gallery", ok=_HTML, public=True)
async def index(request: web.Request) -> web.FileResponse:
    headers = {**_CACHE, "Content-Security-Policy": await page_policy(request)}
    return web.FileResponse(STATIC / "index.html", headers={**headers, "Content-Type": "text/html; charset=utf-8"})


@operation("A static file of the gallery", tag="gallery", ok={"200": {"description": "the file"}}, errors=(404,), parameters=(_NAME,), public=True)
async def asset(request: web.Request) -> web.StreamResponse:
    path = FILES.get(request.match_info["name"])
    if path is None:
        raise NotFound("the gallery has no such file", code="not_found")
    content_type = _TYPES.get(path.suffix, "application/octet-stream")
    return web.FileResponse(path, headers={**_CACHE, "Content-Type": f"{content_type}; charset=utf-8" if content_type.startswith("text/") else content_type})

