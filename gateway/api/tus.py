"""tus 1.0.0 resumable uploads at `/collections/{c}/tus` and `/v1/images/tus` (the default
collection): core protocol, creation, creation-with-upload, termination, expiration, checksum.

Handlers translate headers; `gateway.uploads.tus` orders the writes.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timezone
from email.utils import format_datetime
from aiohttp import web

from gateway.api.common import absolute, document, etag, service, within
from gateway.api.params import no_query, parse_json
from gateway.errors import GatewayError, Invalid, NotFound, PreconditionFailed, Unsupported
from gateway.keys import CONFIG, USER_ID
from gateway.metadata.base import PendingUpload
from gateway.names import collection_name
from gateway.uploads import tus
from gateway.uploads.idempotency import HEADER, Idempotency, fingerprint, parse_key
from gateway.uploads.leases import new_upload_id
from gateway.uploads.tus import Declared, ResumableUploads

OFFSET_STREAM = "application/offset+octet-stream"
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_CHUNK = 256 * 1024
_METADATA_KEY = re.compile(r"[!#-+\--~]{1,64}")  # printable ASCII without space and comma
_MAX_METADATA = 16 * 1024


def _collection(request: web.Request) -> str:
    if "collection" in request.match_info:
        return collection_name(request.match_info["collection"])
    return request.app[CONFIG].default_collection


def _base(request: web.Request) -> str:
    if "collection" in request.match_info:
        return f"/collections/{_collection(request)}/tus"
    return "/v1/images/tus"


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


def _protocol(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Every answer names the protocol version; a request for another version gets 412."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            if request.method != "OPTIONS" and request.headers.get("Tus-Resumable") != tus.VERSION:
                raise PreconditionFailed(f"this server speaks tus {tus.VERSION}; send Tus-Resumable: {tus.VERSION}", code="tus_version", headers={"Tus-Version": tus.VERSION})
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


def parse_metadata(raw: str | None) -> tuple[Declared, str]:
    """Upload-Metadata: comma-separated `key base64(value)` pairs. `filename` (or `name`),
    `content_type` (or `filetype`, `type`) and `properties` (base64 of a JSON object) are read;
    other keys are allowed and ignored, as the protocol asks."""
    if raw is None or not raw.strip():
        return Declared(), ""
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
    return Declared(filename, content_type, properties), raw.strip()


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


async def _append(request: web.Request, upload: PendingUpload, offset: int, *, status: int, extra: dict[str, str]) -> web.Response:
    if request.content_type != OFFSET_STREAM:
        raise Unsupported(f"PATCH bodies are {OFFSET_STREAM}", code="expected_offset_stream")
    uploads = _uploads(request)
    appended = await uploads.append(
        upload.collection, upload.id, offset, _body(request), owner=request.get(USER_ID), checksum=_checksum(request)
    )
    headers = {**extra, **_tus_headers(appended.upload, uploads.offset(appended.upload))}
    if appended.record is None:
        return web.Response(status=status if status != 200 else 204, headers=headers)
    # The last byte: the stored image, as an ordinary upload answers it.
    return web.json_response(document(request, appended.record), status=status, headers={**headers, "ETag": etag(appended.record)})


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


@_protocol
async def create(request: web.Request) -> web.Response:
    """Creation, and creation-with-upload when the body carries the first bytes."""
    collection = _collection(request)
    if "Upload-Defer-Length" in request.headers:
        raise Invalid("uploads declare their Upload-Length (creation-defer-length is not offered)", code="invalid_header")
    length = _length(request, "Upload-Length")
    declared, raw_metadata = parse_metadata(request.headers.get("Upload-Metadata"))
    uploads = _uploads(request)
    owner = request.get(USER_ID)
    key = parse_key(request.headers.get(HEADER))

    async def recover(upload_id: str) -> dict[str, str] | None:
        try:
            return {"upload_id": (await uploads.meta.get_upload(upload_id)).id}
        except NotFound:
            return None

    claim = await Idempotency(uploads.meta, request.app[CONFIG].uploads.idempotency_ttl_seconds).claim(
        key, caller=owner, collection=collection, kind="tus", recover=recover,
        fingerprint=fingerprint("tus", length, raw_metadata), new_id=new_upload_id,
    )
    if not claim.fresh:
        answer = await claim.replay(fingerprint("tus", length, raw_metadata), recover)
        upload = await uploads.get(collection, answer["upload_id"], owner=owner)
        location = {"Location": absolute(request, f"{_base(request)}/{upload.id}")}
        return web.Response(status=201, headers={**location, **_tus_headers(upload, uploads.offset(upload))})
    try:
        upload = await uploads.create(collection, length, declared, owner=owner, upload_id=claim.resource_id if key else None)
    except BaseException as exc:
        await claim.outcome(exc)
        raise
    await claim.succeeded({"upload_id": upload.id})
    location = {"Location": absolute(request, f"{_base(request)}/{upload.id}")}
    if request.content_type == OFFSET_STREAM and (request.content_length or request.body_exists):
        return await _append(request, upload, 0, status=201, extra=location)
    return web.Response(status=201, headers={**location, **_tus_headers(upload, 0)})


@_protocol
async def head(request: web.Request) -> web.Response:
    uploads = _uploads(request)
    upload = await uploads.get(_collection(request), _upload_id(request), owner=request.get(USER_ID))
    headers = {**_tus_headers(upload, uploads.offset(upload)), "Upload-Length": str(upload.length)}
    return web.Response(status=200, headers=headers)


@_protocol
async def patch(request: web.Request) -> web.Response:
    upload = await _uploads(request).get(_collection(request), _upload_id(request), owner=request.get(USER_ID))
    if request.content_type != OFFSET_STREAM:
        raise Unsupported(f"PATCH bodies are {OFFSET_STREAM}", code="expected_offset_stream")
    return await _append(request, upload, _length(request, "Upload-Offset"), status=200, extra={})


@_protocol
async def terminate(request: web.Request) -> web.Response:
    await _uploads(request).terminate(_collection(request), _upload_id(request), owner=request.get(USER_ID))
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    table: list[web.RouteDef] = []
    for base in ("/collections/{collection}/tus", "/v1/images/tus"):
        table += [
            web.options(base, options),
            web.post(base, create),
            web.options(base + "/{upload_id}", options),
            web.head(base + "/{upload_id}", head),
            web.patch(base + "/{upload_id}", patch),
            web.delete(base + "/{upload_id}", terminate),
        ]
    return table

