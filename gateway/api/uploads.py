"""Shared by every upload route: the Idempotency-Key guard around an upload (multipart,
`/v1/images`), and direct-to-bucket uploads (`POST /collections/{c}/uploads`, its completion,
and, on the filesystem backend, the signed form route that stands in for the bucket)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from aiohttp import BodyPartReader, web

from gateway.api.common import absolute, document, etag, media_type, multipart, next_part, read_json_object, service, within
from gateway.api.openapi import IDEMPOTENCY_KEY, Spec, image_ok, json_answer, operation, query_param
from gateway.api.params import no_query
from gateway.errors import Forbidden, Invalid, TooLarge, Unsupported
from gateway.images import FORMATS
from gateway.jsoncodec import json_response
from gateway.keys import CONFIG, LOCAL_FILES, USER_ID
from gateway.metadata.base import iso_time
from gateway.names import collection_name
from gateway.storage.filesystem import UPLOAD_ROUTE
from gateway.uploads.direct import DirectUploads
from gateway.uploads.idempotency import HEADER, RecordedUpload, RepeatedUpload, idempotent_upload, parse_key

TAG = "direct uploads"
_CHUNK = 1024 * 1024
_START_FIELDS = ("filename", "size", "content_type", "properties", "dedupe")
_START: Spec = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object", "required": ["size", "content_type"], "additionalProperties": False,
                "properties": {
                    "filename": {"type": "string"}, "size": {"type": "integer", "minimum": 1, "description": "the file's size in bytes"},
                    "content_type": {"enum": sorted(f.content_type for f in FORMATS.values()), "description": "the form accepts only this type"},
                    "properties": {"type": "object"},
                    "dedupe": {"type": "boolean", "description": "at completion, answer an image with the same bytes instead of storing a copy"},
                },
            }
        }
    },
}  # fmt: skip
_STARTED = {
    "type": "object", "required": ["id", "method", "url", "fields", "expires_at", "complete_url"],
    "properties": {
        "id": {"type": "string"}, "method": {"const": "POST"}, "url": {"type": "string", "description": "where to POST the form"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}, "description": "form fields to send before the file (field `file`)"},
        "expires_at": {"type": "string", "format": "date-time"}, "complete_url": {"type": "string", "description": "POST here once the file is sent"},
    },
}  # fmt: skip
_FORM: Spec = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object", "required": ["file"], "additionalProperties": {"type": "string"},
                "properties": {"file": {"type": "string", "contentMediaType": "application/octet-stream", "description": "last, after the fields the start answered"}},
            }
        }
    },
}  # fmt: skip
_SIGNED_FORM_PARAMS = (
    query_param("max_bytes", {"type": "string"}, "the largest file accepted"),
    query_param("expires", {"type": "string"}, "expiry, seconds since the epoch"),
    query_param("signature", {"type": "string"}, "HMAC-SHA256 of method, path and query"),
)


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


@operation(
    "Start a direct upload: a form to send the file straight to the object store", tag=TAG,
    ok={"201": json_answer("the form (a presigned POST on S3, a signed gateway route on the filesystem backend)", _STARTED)},
    errors=(404, 409, 413, 415, 503), body=_START,
)  # fmt: skip
async def start_direct_upload(request: web.Request) -> web.Response:
    """201 with a form the client sends its file to, straight to the object store."""
    no_query(request.query)
    collection = collection_name(request.match_info["collection"])
    body = await read_json_object(request, request.app[CONFIG].limits.max_properties_bytes + 4096, "the body")
    unknown = set(body) - set(_START_FIELDS)
    if unknown:
        raise Invalid(f"unknown field {sorted(unknown)[0][:64]!r}; expected {', '.join(_START_FIELDS)}", code="unknown_field")
    started = await DirectUploads(service(request)).start(
        collection, filename=body.get("filename"), size=body.get("size"), content_type=body.get("content_type"),
        properties=body.get("properties"), dedupe=body.get("dedupe", False), owner=request.get(USER_ID),
    )
    url = started.form.url
    complete = request.app.router["direct_upload.complete"].url_for(collection=collection, upload_id=started.upload.id)
    return json_response(
        {
            "id": started.upload.id,
            "method": "POST",
            "url": absolute(request, url) if url.startswith("/") else url,
            "fields": started.form.fields,
            "expires_at": iso_time(started.upload.expires_at),
            "complete_url": absolute(request, str(complete)),
        },
        status=201,
    )


@operation(
    "Complete a direct upload: the stored file is validated and recorded", tag=TAG,
    ok=image_ok("the stored image, or with `duplicate: true` the one already holding these bytes (dedupe)"),
    errors=(404, 409, 413, 415, 422, 503), parameters=(IDEMPOTENCY_KEY,),
)  # fmt: skip
async def complete_direct_upload(request: web.Request) -> web.Response:
    """Validate the object the client sent and record it: 200 with the image document."""
    no_query(request.query)
    collection, upload_id = _upload_target(request)
    done = await DirectUploads(service(request)).complete(
        collection, upload_id, owner=request.get(USER_ID), idempotency_key=parse_key(request.headers.get(HEADER))
    )
    doc = document(request, done.record)
    if done.duplicate:
        doc["duplicate"] = True
    return json_response(doc, headers={"ETag": etag(done.record)})


@operation(
    "A signed upload form (filesystem backend; the signature is the credential)", tag=TAG, ok={"204": {"description": "stored"}},
    errors=(403, 409, 413, 415), parameters=_SIGNED_FORM_PARAMS, body=_FORM, public=True,
)  # fmt: skip
async def receive_form(request: web.Request) -> web.Response:
    """The filesystem backend's stand-in for a bucket's form upload: the signed URL is the
    credential; the form's fields must match what was signed, then the file is stored."""
    key = request.match_info["key"]
    request.app[LOCAL_FILES].verify("POST", UPLOAD_ROUTE + key, dict(request.query))
    max_bytes = int(request.query.get("max_bytes", "0"))
    # Not `request.content_type`: an email-package parse of the header (0.5 ms, see media_type).
    if media_type(request) != "multipart/form-data":
        raise Unsupported("the form is multipart/form-data with the file last, in the field 'file'", code="expected_multipart")
    idle = request.app[CONFIG].limits.body_idle_timeout_seconds
    reader = await multipart(request)
    fields: dict[str, str] = {}
    while (part := await next_part(reader, idle)) is not None:
        if part.name != "file":
            if len(fields) >= 16:
                raise Invalid("too many form fields", code="too_many_fields")
            fields[part.name or ""] = await _short_field(part, idle)
            continue
        if fields.get("key") != key or not fields.get("Content-Type", "").startswith("image/"):
            raise Forbidden("the form's fields do not match what was signed", code="invalid_form")

        async def chunks(part: BodyPartReader = part) -> AsyncIterator[bytes]:
            size = 0
            while chunk := await within(idle, part.read_chunk(256 * 1024)):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"the file is larger than {max_bytes} bytes", code="upload_too_large")
                yield chunk

        await service(request).blobs.put(key, chunks(), content_type=fields["Content-Type"], filename=part.filename or "upload")
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
