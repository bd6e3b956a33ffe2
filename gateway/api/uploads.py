"""Shared by every upload route: the Idempotency-Key guard around an upload (multipart,
`/v1/images`), and direct-to-bucket uploads (`POST /collections/{c}/uploads`, its completion,
and, on the filesystem backend, the signed form route that stands in for the bucket)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from aiohttp import web

from gateway.api.common import service
from gateway.keys import USER_ID
from gateway.uploads.idempotency import HEADER, RecordedUpload, RepeatedUpload, idempotent_upload, parse_key

_CHUNK = 1024 * 1024


def guarded_upload(request: web.Request, collection: str) -> AbstractAsyncContextManager[RecordedUpload | RepeatedUpload]:
    """`service.upload` for this request, answered once per Idempotency-Key."""
    return idempotent_upload(service(request), collection, parse_key(request.headers.get(HEADER)), owner=request.get(USER_ID))


async def in_chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), _CHUNK):
        yield data[start : start + _CHUNK]
