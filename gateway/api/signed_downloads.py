"""The signed-download route of a store whose objects are local files (the filesystem backend):
what a presigned URL is to S3, a signed link is here. Registered only when such a store runs; it
reaches the files through the narrow `LocalFiles` interface, never the store itself."""

from __future__ import annotations

import time

from aiohttp import web

from gateway.api.openapi import operation, query_param
from gateway.errors import BlobNotFound, Forbidden
from gateway.images import CONTENT_TYPES
from gateway.keys import LOCAL_FILES
from gateway.storage.base import content_disposition

# Served bytes are images only; nothing in them may run as a page.
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
}
_LINK_PARAMS = (
    query_param("expires", {"type": "string"}, "expiry, seconds since the epoch"),
    query_param("signature", {"type": "string"}, "HMAC-SHA256 of method, path and query"),
    query_param("filename", {"type": "string"}, "download file name"),
)
_BYTES = {"200": {"description": "the image bytes", "content": {"image/*": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}}}


@operation(
    "A signed download link (filesystem backend; the signature is the credential)", tag="downloads", ok=_BYTES,
    errors=(403, 404), parameters=_LINK_PARAMS, public=True,
)  # fmt: skip
async def serve_object(request: web.Request) -> web.StreamResponse:
    files = request.app[LOCAL_FILES]
    key = request.match_info["key"]
    query = {k: v for k, v in request.query.items()}
    if len(query) != len(request.query):
        raise Forbidden("the link's signature does not match", code="invalid_signature")
    # HEAD is answered for GET links, as S3 does. The path signed is the one the link names.
    files.verify("GET", request.path, query)
    path = files.local_path(key)
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
