"""Shapes shared by both seed APIs: the image document, absolute URLs, bounded body reading."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from datetime import datetime, timezone
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import web
from yarl import URL

from gateway.errors import Invalid, RequestTimeout, TooLarge
from gateway.keys import CONFIG, SERVICE
from gateway.images import displayed_size
from gateway.metadata.base import ImageRecord
from gateway.service import ImageService
from gateway.api.params import parse_json

T = TypeVar("T")


def service(request: web.Request) -> ImageService:
    return request.app[SERVICE]


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def origin(request: web.Request) -> URL:
    """The scheme and host clients reach us by (behind a trusted proxy, its forwarded ones)."""
    if request.app[CONFIG].server.trust_forwarded_headers:
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        if proto in ("http", "https") and host:
            return URL.build(scheme=proto, authority=host)
    return request.url.origin()


def absolute(request: web.Request, path: str, query: dict[str, str] | None = None) -> str:
    url = origin(request).join(URL(path))
    return str(url.with_query(query) if query else url)


def image_route(record: ImageRecord) -> str:
    return f"/collections/{record.collection}/images/{record.id}/image"


def document(request: web.Request, record: ImageRecord) -> dict[str, Any]:
    """The stored document as both seed APIs answer it."""
    doc: dict[str, Any] = {
        "_id": record.id,
        "id": record.id,
        "collection": record.collection,
        "image": record.image,
        "time": iso(record.time),
        "content_type": record.content_type,
        "format": record.format,
        # As displayed (EXIF orientations 5-8 swap them); the stored pixel size beside them.
        "width": displayed_size(record.width, record.height, record.orientation)[0],
        "height": displayed_size(record.width, record.height, record.orientation)[1],
        "pixel_width": record.width,
        "pixel_height": record.height,
        "orientation": record.orientation,
        "size": record.size,
        "sha256": record.sha256,
        "properties": record.properties,
        "updated_at": iso(record.updated_at),
        "path": record.path,
        "url": absolute(request, image_route(record)),
    }
    if record.owner is not None:
        doc["owner"] = record.owner
    return doc


def etag(record: ImageRecord) -> str:
    return f'"{record.id}.{record.version}"'


def if_match_version(request: web.Request, image_id: str) -> int | None:
    """The version an `If-Match` header pins an update to, or None without one."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    match = re.fullmatch(r'\s*(?:W/)?"([0-9a-f]{24})\.(\d{1,12})"\s*', raw)
    if match is None or match.group(1) != image_id:
        return -1  # can never match: the update answers 412
    return int(match.group(2))


async def within(seconds: float, read: Awaitable[T]) -> T:
    """One read of a request body, refused (408) when the client sends nothing for `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            return await read
    except TimeoutError:
        raise RequestTimeout(f"the request body stalled for {seconds:g} seconds", code="body_timeout") from None


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, refusing (413) past `max_bytes` while reading, not after."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise TooLarge(f"the body is larger than {max_bytes} bytes", code="body_too_large")
    idle = request.app[CONFIG].limits.body_idle_timeout_seconds
    body = bytearray()
    while chunk := await within(idle, request.content.read(64 * 1024)):
        body += chunk
        if len(body) > max_bytes:
            raise TooLarge(f"the body is larger than {max_bytes} bytes", code="body_too_large")
    return bytes(body)


async def read_json_object(request: web.Request, max_bytes: int, what: str) -> dict[str, Any]:
    value = parse_json(await read_body(request, max_bytes), what)
    if not isinstance(value, dict):
        raise Invalid(f"{what} must be a JSON object", code="invalid_body")
    return value


_DATA_URL = re.compile(r"data:[\w/+.-]*(?:;[\w=.-]+)*;base64,", re.ASCII)


def decode_base64(value: Any) -> bytes:
    """Base64 as clients really send it: with line breaks or spaces (seed 000's `base64` output
    pasted into JSON), URL-safe or standard alphabet, padded or not, or as a data: URL."""
    if not isinstance(value, str) or not value:
        raise Invalid("data must be a non-empty base64 string", code="invalid_base64")
    text = _DATA_URL.sub("", value[:256], count=1) + value[256:] if value.startswith("data:") else value
    text = re.sub(r"\s+", "", text).replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("data is not valid base64", code="invalid_base64") from None


async def redirect_to_object(request: web.Request, collection: str, image_id: str) -> web.Response:
    """302 to a presigned link of the image's object."""
    url = await service(request).download_url(collection, image_id)
    ttl = request.app[CONFIG].storage.presign_ttl_seconds
    # The link stays valid for the TTL; letting the browser reuse the redirect for part of it
    # lets it reuse its cached image too.
    raise web.HTTPFound(
        absolute(request, url) if url.startswith("/") else url,
        headers={"Cache-Control": f"private, max-age={min(ttl // 2, 300)}"},
    )
