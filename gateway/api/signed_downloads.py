"""The signed-download route of a store whose objects are local files (the filesystem backend):
what a presigned URL is to S3, a signed link is here. Registered only when such a store runs; it
reaches the files through the narrow `LocalFiles` interface, never the store itself."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

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
# Files up to this size are read whole in one executor call. aiohttp's FileResponse makes three
# or more thread hops per file (stat, open, then each chunk: with uvloop it cannot sendfile),
# about a third of a 100 kB download's gateway CPU. Range, conditional and HEAD requests, and
# larger files, are still its to answer.
WHOLE_FILE_MAX = 2 * 1024 * 1024
_ITS_HEADERS = ("Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since")
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
    whole = None
    if request.method == "GET" and not any(name in request.headers for name in _ITS_HEADERS):
        whole = await asyncio.get_running_loop().run_in_executor(None, _read_whole, path)
    elif not path.is_file():
        raise BlobNotFound("the image's object is missing")
    remaining = max(0, int(query["expires"]) - int(time.time()))
    headers = {
        "Content-Type": CONTENT_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream"),
        "Content-Disposition": content_disposition(query.get("filename") or key.rsplit("/", 1)[-1]),
        "Cache-Control": f"private, max-age={remaining}",
        **SAFE_HEADERS,
    }
    if whole is None:
        return web.FileResponse(path, headers=headers)
    status, body = whole
    # As FileResponse would answer the same file, so a later conditional request matches.
    response = web.Response(body=body, headers=headers)
    response.etag = f"{status.st_mtime_ns:x}-{status.st_size:x}"
    response.last_modified = status.st_mtime
    response.headers["Accept-Ranges"] = "bytes"
    return response


def _read_whole(path: Path) -> tuple[os.stat_result, bytes] | None:
    """The file's status and, up to WHOLE_FILE_MAX, its bytes; `BlobNotFound` when it is missing
    or not a regular file. None when it is larger: FileResponse streams it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise BlobNotFound("the image's object is missing") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise BlobNotFound("the image's object is missing")
        if status.st_size > WHOLE_FILE_MAX:
            return None
        with os.fdopen(fd, "rb", closefd=False) as file:
            return status, file.read()
    finally:
        os.close(fd)
