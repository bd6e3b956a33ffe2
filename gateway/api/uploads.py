"""Shared by every upload route: the Idempotency-Key guard around an upload (multipart,
`/v1/images`), and direct-to-bucket uploads (`POST /collections/{c}/uploads`, its completion,
and, on the filesystem backend, the signed form route that stands in for the bucket)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiohttp import BodyPartReader, web

from gateway.api.common import absolute, document, etag, iso, read_json_object, service, within
from gateway.api.params import no_query
from gateway.config import Config
from gateway.errors import Forbidden, Invalid, NotFound, TooLarge, Unsupported
from gateway.keys import BLOBS, CONFIG, USER_ID
from gateway.names import collection_name
from gateway.storage.filesystem import UPLOAD_ROUTE, FilesystemBlobStore
from gateway.uploads.direct import DirectUploads
from gateway.uploads.idempotency import (
    HEADER,
    Idempotency,
    RecordedUpload,
    RepeatedUpload,
    answered_record,
    fingerprint,
    idempotent_upload,
    parse_key,
    record_answer,
)

_CHUNK = 1024 * 1024


def guarded_upload(request: web.Request, collection: str) -> AbstractAsyncContextManager[RecordedUpload | RepeatedUpload]:
    """`service.upload` for this request, answered once per Idempotency-Key."""
    return idempotent_upload(service(request), collection, parse_key(request.headers.get(HEADER)), owner=request.get(USER_ID))


async def in_chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), _CHUNK):
        yield data[start : start + _CHUNK]


def _upload_target(request: web.Request) -> tuple[str, str]:
    upload_id = request.match_info["upload_id"]
    if re.fullmatch(r"[0-9a-f]{32}", upload_id) is None:
        raise Invalid("malformed upload id", code="invalid_upload_id")
    return collection_name(request.match_info["collection"]), upload_id


async def start_direct_upload(request: web.Request) -> web.Response:
    """201 with a form the client sends its file to, straight to the object store."""
    no_query(request.query)
    collection = collection_name(request.match_info["collection"])
    body = await read_json_object(request, request.app[CONFIG].limits.max_properties_bytes + 4096, "the body")
    unknown = set(body) - {"filename", "size", "content_type", "properties"}
    if unknown:
        raise Invalid(f"unknown field {sorted(unknown)[0][:64]!r}; expected filename, size, content_type, properties", code="unknown_field")
    started = await DirectUploads(service(request)).start(
        collection, filename=body.get("filename"), size=body.get("size"), content_type=body.get("content_type"),
        properties=body.get("properties"), owner=request.get(USER_ID),
    )
    url = started.form.url
    return web.json_response(
        {
            "id": started.upload.id,
            "method": "POST",
            "url": absolute(request, url) if url.startswith("/") else url,
            "fields": started.form.fields,
            "expires_at": iso(started.upload.expires_at),
            "complete_url": absolute(request, f"/collections/{collection}/uploads/{started.upload.id}/complete"),
        },
        status=201,
    )


async def complete_direct_upload(request: web.Request) -> web.Response:
    """Validate the object the client sent and record it: 200 with the image document."""
    no_query(request.query)
    collection, upload_id = _upload_target(request)
    owner = request.get(USER_ID)
    direct = DirectUploads(service(request))
    key = parse_key(request.headers.get(HEADER))

    async def recover(image_id: str) -> dict[str, Any] | None:
        try:
            return record_answer(await direct.meta.get(collection, image_id))
        except NotFound:
            return None

    claim = await Idempotency(direct.meta, request.app[CONFIG].uploads.idempotency_ttl_seconds).claim(
        key, caller=owner, collection=collection, kind="direct", recover=recover, fingerprint=fingerprint("direct", upload_id),
    )
    if not claim.fresh:
        record = answered_record(await claim.replay(fingerprint("direct", upload_id), recover))
    else:
        try:
            record = await direct.complete(collection, upload_id, owner=owner)
        except BaseException as exc:
            await claim.outcome(exc)
            raise
        await claim.succeeded(record_answer(record))
    return web.json_response(document(request, record), headers={"ETag": etag(record)})


async def receive_form(request: web.Request) -> web.Response:
    """The filesystem backend's stand-in for a bucket's form upload: the signed URL is the
    credential; the form's fields must match what was signed, then the file is stored."""
    blobs = request.app[BLOBS]
    if not isinstance(blobs, FilesystemBlobStore):
        raise web.HTTPNotFound()
    key = request.match_info["key"]
    blobs.verify("POST", UPLOAD_ROUTE + key, dict(request.query))
    max_bytes = int(request.query.get("max_bytes", "0"))
    if request.content_type != "multipart/form-data":
        raise Unsupported("the form is multipart/form-data with the file last, in the field 'file'", code="expected_multipart")
    limits = request.app[CONFIG].limits
    try:
        reader = await request.multipart()
    except ValueError:
        raise Invalid("the multipart body has no boundary", code="invalid_multipart") from None
    fields: dict[str, str] = {}
    while (part := await within(limits.body_idle_timeout_seconds, reader.next())) is not None:
        if not isinstance(part, BodyPartReader):
            raise Invalid("nested multipart bodies are not supported", code="invalid_multipart")
        if part.name != "file":
            if len(fields) >= 16:
                raise Invalid("too many form fields", code="too_many_fields")
            fields[part.name or ""] = await _short_field(part, limits.body_idle_timeout_seconds)
            continue
        if fields.get("key") != key or not fields.get("Content-Type", "").startswith("image/"):
            raise Forbidden("the form's fields do not match what was signed", code="invalid_form")

        async def chunks() -> AsyncIterator[bytes]:
            size = 0
            while chunk := await within(limits.body_idle_timeout_seconds, part.read_chunk(256 * 1024)):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"the file is larger than {max_bytes} bytes", code="upload_too_large")
                yield chunk

        await blobs.put(key, chunks(), content_type=fields["Content-Type"], filename=part.filename or "upload")
        # As S3 answers a form upload without success_action_status.
        return web.Response(status=204)
    raise Invalid("the form carries no field 'file'", code="missing_image")


async def _short_field(part: BodyPartReader, idle: float) -> str:
    value = bytearray()
    while chunk := await within(idle, part.read_chunk(4096)):
        value += chunk
        if len(value) > 4096:
            raise TooLarge("a form field is larger than 4096 bytes", code="field_too_large")
    return value.decode("utf-8", "replace")


def routes(config: Config) -> list[web.RouteDef]:
    table = [
        web.post("/collections/{collection}/uploads", start_direct_upload),
        web.post("/collections/{collection}/uploads/{upload_id}/complete", complete_direct_upload),
    ]
    if config.storage.backend == "filesystem":
        table.append(web.post(UPLOAD_ROUTE + "{key:.+}", receive_form))
    return table
