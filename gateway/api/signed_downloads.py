"""The filesystem backend's download route: what a presigned URL is to S3, a signed link is here."""

from __future__ import annotations

import time

from aiohttp import web

from gateway.errors import BlobNotFound, Forbidden
from gateway.images import CONTENT_TYPES
from gateway.keys import BLOBS
from gateway.storage.base import content_disposition
from gateway.storage.filesystem import DOWNLOAD_ROUTE, FilesystemBlobStore

# Served bytes are images only; nothing in them may run as a page.
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
}


async def serve_object(request: web.Request) -> web.StreamResponse:
    store = request.app[BLOBS]
    assert isinstance(store, FilesystemBlobStore)
    key = request.match_info["key"]
    query = {k: v for k, v in request.query.items()}
    if len(query) != len(request.query):
        raise Forbidden("the link's signature does not match", code="invalid_signature")
    # HEAD is answered for GET links, as S3 does.
    store.verify("GET", DOWNLOAD_ROUTE + key, query)
    path = store.local_path(key)
    if not path.is_file():
        raise BlobNotFound("the image's object is missing")
    remaining = max(0, int(query["expires"]) - int(time.time()))
    headers = {
        "Content-Type": CONTENT_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream"),
        "Content-Disposition": content_disposition(query.get("filename") or key.rsplit("/", 1)[-1]),
        "Cache-Control": f"private, max-age={remaining}",
        **SAFE_HEADERS,
    }
    return web.FileResponse(path, headers=headers)


def routes() -> list[web.RouteDef]:
    return [web.get(DOWNLOAD_ROUTE + "{key:.+}", serve_object)]
