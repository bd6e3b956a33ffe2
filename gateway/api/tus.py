"""tus 1.0.0 resumable uploads at `/collections/{c}/tus` and `/v1/images/tus` (the default
collection): core protocol, creation, creation-with-upload, termination, expiration, checksum.

Handlers translate headers; `gateway.uploads.tus` orders the writes. OPTIONS is public (it is
how clients discover the protocol); everything else is authenticated as uploads are, and an
upload answers only the caller who created it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timezone
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from gateway.api.common import absolute, document, etag, service, within
from gateway.api.openapi import IDEMPOTENCY_KEY, Spec, header_param, json_answer, operation, operation_of, ref
from gateway.api.params import no_query, parse_json
from gateway.errors import GatewayError, Invalid, PreconditionFailed, Unsupported
from gateway.jsoncodec import json_response
from gateway.keys import CONFIG, USER_ID
from gateway.metadata.base import PendingUpload
from gateway.names import collection_name
from gateway.uploads import tus
from gateway.uploads.idempotency import HEADER, parse_key
from gateway.uploads.tus import Appended, Declared, ResumableUploads

OFFSET_STREAM = "application/offset+octet-stream"
TAG = "tus"
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_CHUNK = 256 * 1024
_METADATA_KEY = re.compile(r"[!#-+\--~]{1,64}")  # printable ASCII without space and comma
_MAX_METADATA = 16 * 1024
_FLAGS = {"true": True, "1": True, "false": False, "0": False}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_TUS_RESUMABLE = header_param("Tus-Resumable", {"const": tus.VERSION}, "the tus protocol version", required=True)
_CREATION = (
    _TUS_RESUMABLE,
    header_param("Upload-Length", {"type": "integer", "minimum": 1}, "the whole upload's size in bytes", required=True),
    header_param(
        "Upload-Metadata", {"type": "string"},
        "comma-separated `key base64(value)` pairs: `filename` (or `name`), `content_type` (or `filetype`), "
        "`properties` (a JSON object), `dedupe` (`true`: answer an image with the same bytes instead of storing a copy)",
    ),
    IDEMPOTENCY_KEY,
)  # fmt: skip
_APPEND = (
    _TUS_RESUMABLE,
    header_param("Upload-Offset", {"type": "integer", "minimum": 0}, "where this body starts; must equal the upload's offset", required=True),
    header_param("Upload-Checksum", {"type": "string"}, "`sha1 <base64>` or `sha256 <base64>` of this body (checksum extension)"),
)
_OFFSET_STREAM_BODY: Spec = {
    "required": True,
    "content": {OFFSET_STREAM: {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}},
}
_HEADERS = {name: {"schema": {"type": "string"}} for name in ("Tus-Resumable", "Upload-Offset", "Upload-Expires")}
_DONE = json_answer("the last byte: the image, validated and recorded as a multipart upload is (with `duplicate: true` under dedupe)", ref("Image"))


def _collection(request: web.Request) -> str:
    if "collection" in request.match_info:
        return collection_name(request.match_info["collection"])
    return request.app[CONFIG].default_collection


def _location(request: web.Request, upload_id: str) -> str:
    if "collection" in request.match_info:
        url = request.app.router["tus.upload"].url_for(collection=_collection(request), upload_id=upload_id)
    else:
        url = request.app.router["v1.tus.upload"].url_for(upload_id=upload_id)
    return absolute(request, str(url))


def _upload_id(request: web.Request) -> str:
    raw = request.match_info["upload_id"]
    if _UPLOAD_ID.fullmatch(raw) is None:
        raise Invalid("malformed upload id", code="invalid_upload_id")
    return raw


def _uploads(request: web.Request) -> ResumableUploads:
    return ResumableUploads(service(request))


def _tus_headers(upload: PendingUpload, offset: int) -> dict[str, str]:
    return {
        "Upload-Offset": str(offset),
        "Upload-Expires": format_datetime(upload.expires_at.astimezone(timezone.utc), usegmt=True),
        "Cache-Control": "no-store",
    }


def _protocol(handler: Handler) -> Handler:
    """Every answer names the protocol version; a request for another version gets 412."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            if request.method != "OPTIONS" and request.headers.get("Tus-Resumable") != tus.VERSION:
                raise PreconditionFailed(
                    f"this server speaks tus {tus.VERSION}; send Tus-Resumable: {tus.VERSION}", code="tus_version", headers={"Tus-Version": tus.VERSION}
                )
            no_query(request.query)
            response = await handler(request)
        except GatewayError as exc:
            exc.headers = {**exc.headers, "Tus-Resumable": tus.VERSION}
            raise
        response.headers["Tus-Resumable"] = tus.VERSION
        return response

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def for_default_collection(handler: Handler) -> Handler:
    """The same operation at `/v1/images/tus`: its own handler, since an alias must take its main
    route's path parameters, and this one names no collection."""

    async def default_collection(request: web.Request) -> web.StreamResponse:
        return await handler(request)

    setattr(default_collection, "__openapi__", operation_of(handler))
    default_collection.__name__ = f"v1_{handler.__name__}"
    return default_collection


def _flag(raw: str, key: str) -> bool:
    if raw.strip().lower() not in _FLAGS:
        raise Invalid(f"Upload-Metadata {key!r} is true or false", code="invalid_metadata")
    return _FLAGS[raw.strip().lower()]


def parse_metadata(raw: str | None) -> Declared:
    """Upload-Metadata: comma-separated `key base64(value)` pairs. `filename` (or `name`),
    `content_type` (or `filetype`, `type`), `properties` (base64 of a JSON object) and `dedupe`
    are read; other keys are allowed and ignored, as the protocol asks."""
    if raw is None or not raw.strip():
        return Declared()
    if len(raw) > _MAX_METADATA:
        raise Invalid(f"Upload-Metadata is longer than {_MAX_METADATA} characters", code="invalid_metadata")
    values: dict[str, str] = {}
    for pair in raw.split(","):
        key, _, encoded = pair.strip().partition(" ")
        if _METADATA_KEY.fullmatch(key) is None or key in values:
            raise Invalid("Upload-Metadata has a malformed or repeated key", code="invalid_metadata")
        try:
            values[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise Invalid(f"Upload-Metadata {key!r} is not base64 of UTF-8 text", code="invalid_metadata") from None
    properties = None
    if "properties" in values:
        properties = parse_json(values["properties"], "the properties in Upload-Metadata")
        if not isinstance(properties, dict):
            raise Invalid("the properties in Upload-Metadata must be a JSON object", code="invalid_properties")
    filename = values.get("filename") or values.get("name")
    content_type = values.get("content_type") or values.get("filetype") or values.get("type")
    dedupe = _flag(values["dedupe"], "dedupe") if "dedupe" in values else False
    return Declared(filename, content_type, properties, dedupe)


def _length(request: web.Request, name: str) -> int:
    raw = request.headers.get(name)
    if raw is None or not raw.isdigit() or len(raw) > 18:
        raise Invalid(f"{name} must be a non-negative integer", code="invalid_header")
    return int(raw)


def _checksum(request: web.Request) -> tuple[str, bytes] | None:
    raw = request.headers.get("Upload-Checksum")
    if raw is None:
        return None
    algorithm, _, encoded = raw.strip().partition(" ")
    if algorithm not in tus.CHECKSUMS:
        raise Invalid(f"Upload-Checksum algorithms are {', '.join(tus.CHECKSUMS)}", code="unsupported_checksum")
    try:
        return algorithm, base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("Upload-Checksum's digest is not base64", code="invalid_header") from None


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    idle = request.app[CONFIG].limits.body_idle_timeout_seconds
    while chunk := await within(idle, request.content.read(_CHUNK)):
        yield chunk


def _answer(request: web.Request, uploads: ResumableUploads, appended: Appended, *, status: int, extra: dict[str, str]) -> web.Response:
    headers = {**extra, **_tus_headers(appended.upload, uploads.offset(appended.upload))}
    if appended.done is None:
        return web.Response(status=status if status != 200 else 204, headers=headers)
    # The last byte: the stored image, as an ordinary upload answers it.
    record = appended.done.record
    doc: dict[str, Any] = document(request, record)
    if appended.done.duplicate:
        doc["duplicate"] = True
    return json_response(doc, status=status, headers={**headers, "ETag": etag(record)})


async def _append(request: web.Request, upload: PendingUpload, offset: int, *, status: int, extra: dict[str, str]) -> web.Response:
    if request.content_type != OFFSET_STREAM:
        raise Unsupported(f"PATCH bodies are {OFFSET_STREAM}", code="expected_offset_stream")
    uploads = _uploads(request)
    appended = await uploads.append(
        upload.collection, upload.id, offset, _body(request), owner=request.get(USER_ID), checksum=_checksum(request)
    )
    return _answer(request, uploads, appended, status=status, extra=extra)


@operation(
    "tus discovery: version, extensions, checksum algorithms and Tus-Max-Size", tag=TAG, public=True,
    ok={"204": {"description": "in Tus-Version, Tus-Extension, Tus-Checksum-Algorithm and Tus-Max-Size", "headers": {
        name: {"schema": {"type": "string"}} for name in ("Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Checksum-Algorithm", "Tus-Max-Size")
    }}},
)  # fmt: skip
@_protocol
async def options(request: web.Request) -> web.Response:
    limits = request.app[CONFIG].limits
    return web.Response(
        status=204,
        headers={
            "Tus-Version": tus.VERSION,
            "Tus-Extension": ",".join(tus.EXTENSIONS),
            "Tus-Max-Size": str(limits.max_upload_bytes),
            "Tus-Checksum-Algorithm": ",".join(tus.CHECKSUMS),
        },
    )


@operation(
    "Create a resumable upload (tus creation; creation-with-upload when the body carries the first bytes)", tag=TAG,
    ok={
        "201": {
            "description": "created; Location is the upload's URL, Upload-Offset what the body stored; a body that was the whole upload is answered with the image (as the last PATCH is)",
            "headers": {"Location": {"schema": {"type": "string"}}, **_HEADERS},
            "content": {"application/json": {"schema": ref("Image")}},
        },
    },
    errors=(404, 408, 409, 412, 413, 415, 422, 460, 503), parameters=_CREATION,
)  # fmt: skip
@_protocol
async def create(request: web.Request) -> web.Response:
    """Creation, and creation-with-upload when the body carries the first bytes."""
    collection = _collection(request)
    if "Upload-Defer-Length" in request.headers:
        raise Invalid("uploads declare their Upload-Length (creation-defer-length is not offered)", code="invalid_header")
    length = _length(request, "Upload-Length")
    declared = parse_metadata(request.headers.get("Upload-Metadata"))
    uploads = _uploads(request)
    key = parse_key(request.headers.get(HEADER))
    upload = await uploads.create(collection, length, declared, owner=request.get(USER_ID), idempotency_key=key)
    location = {"Location": _location(request, upload.id)}
    if request.content_type == OFFSET_STREAM and (request.content_length or request.body_exists) and uploads.offset(upload) == 0:
        return await _append(request, upload, 0, status=201, extra=location)
    return web.Response(status=201, headers={**location, **_tus_headers(upload, uploads.offset(upload))})


@operation(
    "The offset of a resumable upload (tus core)", tag=TAG, parameters=(_TUS_RESUMABLE,), errors=(404, 412, 503),
    ok={"200": {"description": "Upload-Offset (bytes stored), Upload-Length and Upload-Expires; no body", "headers": {**_HEADERS, "Upload-Length": {"schema": {"type": "string"}}}}},
)  # fmt: skip
@_protocol
async def head(request: web.Request) -> web.Response:
    uploads = _uploads(request)
    upload = await uploads.get(_collection(request), _upload_id(request), owner=request.get(USER_ID))
    headers = {**_tus_headers(upload, uploads.offset(upload)), "Upload-Length": str(upload.length)}
    return web.Response(status=200, headers=headers)


@operation(
    "Append to a resumable upload (tus core, checksum); the last byte records the image", tag=TAG,
    ok={"204": {"description": "stored; Upload-Offset is the new offset", "headers": _HEADERS}, "200": _DONE},
    errors=(404, 408, 409, 412, 413, 415, 460, 503), parameters=_APPEND, body=_OFFSET_STREAM_BODY,
)  # fmt: skip
@_protocol
async def patch(request: web.Request) -> web.Response:
    upload = await _uploads(request).get(_collection(request), _upload_id(request), owner=request.get(USER_ID))
    if request.content_type != OFFSET_STREAM:
        raise Unsupported(f"PATCH bodies are {OFFSET_STREAM}", code="expected_offset_stream")
    return await _append(request, upload, _length(request, "Upload-Offset"), status=200, extra={})


@operation(
    "Terminate a resumable upload (tus termination): its bytes are removed", tag=TAG, parameters=(_TUS_RESUMABLE,),
    ok={"204": {"description": "removed with its bytes"}}, errors=(404, 409, 412, 503),
)  # fmt: skip
@_protocol
async def terminate(request: web.Request) -> web.Response:
    await _uploads(request).terminate(_collection(request), _upload_id(request), owner=request.get(USER_ID))
    return web.Response(status=204)


# The same operations on seed 000's default collection.
v1_options = for_default_collection(options)
v1_create = for_default_collection(create)
v1_head = for_default_collection(head)
v1_patch = for_default_collection(patch)
v1_terminate = for_default_collection(terminate)
