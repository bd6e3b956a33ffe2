"""Shapes shared by both seed APIs: the image document, absolute URLs, bounded body and
multipart reading, the caller's scope."""

from __future__ import annotations

import asyncio
import base64
import functools
import binascii
import re
import warnings
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.multipart import BadContentDispositionHeader, content_disposition_filename, parse_content_disposition
from yarl import URL

from gateway.errors import Invalid, RequestTimeout, TooLarge
from gateway.images import displayed_size
from gateway.keys import CONFIG, RENDITIONS, SCOPE, SERVICE
from gateway.metadata.base import ImageRecord, iso_time
from gateway.names import COLLECTION_RE, IMAGE_ID_PATTERN, IMAGE_ID_RE
from gateway.service import EVERYONE, ImageService, Scope
from gateway.api.params import parse_json
from gateway.renditions import spec as renditions

T = TypeVar("T")
_PART_CHUNK = 256 * 1024


def service(request: web.Request) -> ImageService:
    return request.app[SERVICE]


def scope(request: web.Request) -> Scope:
    """Whose images this caller reaches (set by the auth middleware; everyone's without it)."""
    return request.get(SCOPE, EVERYONE)


def origin(request: web.Request) -> URL:
    """The scheme and host clients reach us by (behind a trusted proxy, its forwarded ones)."""
    if request.app[CONFIG].server.trust_forwarded_headers:
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        if proto in ("http", "https") and host:
            return URL.build(scheme=proto, authority=host)
    return _own_origin(request)[0]


# `request.url.origin()` (and its text) by the scheme and Host they are made of: building the
# request's URL costs more than the rest of a document's links. Hosts are the caller's to name,
# so the memory is bounded (and simply starts over when full).
_ORIGINS: dict[tuple[str, str], tuple[URL, str]] = {}
_MAX_ORIGINS = 256


def _own_origin(request: web.Request) -> tuple[URL, str]:
    # Only an origin-form target ("/path") leaves the URL's origin to the scheme and Host alone;
    # an absolute-form one ("http://host/path") or a "//" path is left to yarl every time.
    raw = request.raw_path
    if not raw.startswith("/") or raw.startswith("//"):
        url = request.url.origin()
        return url, str(url)
    key = (request.scheme, request.host)
    found = _ORIGINS.get(key)
    if found is None:
        url = request.url.origin()
        if len(_ORIGINS) >= _MAX_ORIGINS:
            _ORIGINS.clear()
        found = _ORIGINS[key] = (url, str(url))
    return found


def _origin_text(request: web.Request) -> str:
    """`str(origin(request))`."""
    if request.app[CONFIG].server.trust_forwarded_headers:
        return str(origin(request))
    return _own_origin(request)[1]


def absolute(request: web.Request, path: str, query: dict[str, str] | None = None) -> str:
    url = origin(request).join(URL(path))
    return str(url.with_query(query) if query else url)


def image_route(request: web.Request, record: ImageRecord) -> str:
    return str(request.app.router["images.download"].url_for(collection=record.collection, image_id=record.id))


def _plain(record: ImageRecord) -> bool:
    """Whether the record's names are as `names` lets them in: unreserved URL characters and no
    dot segment, which `url_for` and `absolute` leave as they are."""
    return COLLECTION_RE.fullmatch(record.collection) is not None and ".." not in record.collection and IMAGE_ID_RE.fullmatch(record.id) is not None


def image_url(request: web.Request, record: ImageRecord) -> str:
    """`absolute(request, image_route(request, record))`; for names as they are let in (every
    stored record's), joined as text: yarl's building and joining cost more than the rest of a
    document."""
    if not _plain(record):
        return absolute(request, image_route(request, record))
    template = request.app.router["images.download"].canonical
    path = template.replace("{collection}", record.collection).replace("{image_id}", record.id)
    return _origin_text(request) + path


_THUMBNAIL_QUERY = "?" + urlencode({"preset": renditions.THUMBNAIL_PRESET})


def document(request: web.Request, record: ImageRecord) -> dict[str, Any]:
    """The stored document as both seed APIs answer it: the record's fields as `to_json` gives
    them, in its order (built here field by field: `to_json` makes every field, and the times
    cost a microsecond each), with the links and the displayed size."""
    width, height = displayed_size(record.width, record.height, record.orientation)
    doc: dict[str, Any] = {
        "_id": record.id, "id": record.id, "collection": record.collection, "image": record.image, "time": _iso_time(record.time),
        "content_type": record.content_type, "format": record.format, "width": width, "height": height, "size": record.size,
        "sha256": record.sha256, "properties": record.properties, "updated_at": _iso_time(record.updated_at), "path": record.path,
        # As displayed (EXIF orientations 5-8 swap them, above); the stored pixel size beside them.
        "pixel_width": record.width, "pixel_height": record.height, "orientation": record.orientation,
    }  # fmt: skip
    doc["url"] = url = image_url(request, record)
    doc["thumbnail_url"] = url + _THUMBNAIL_QUERY if _has_thumbnails(request) else None
    if record.owner is not None:
        doc["owner"] = record.owner
    return doc


# `iso_time` of the times documents carry, by value: the same image's are formatted once.
_ISO_TIMES: dict[datetime, str] = {}
_MAX_ISO_TIMES = 4096


def _iso_time(value: datetime) -> str:
    found = _ISO_TIMES.get(value)
    if found is None:
        if len(_ISO_TIMES) >= _MAX_ISO_TIMES:
            _ISO_TIMES.clear()
        found = _ISO_TIMES[value] = iso_time(value)
    return found


def _has_thumbnails(request: web.Request) -> bool:
    return any(p.name == renditions.THUMBNAIL_PRESET for p in request.app[CONFIG].renditions.presets)


def thumbnail_url(request: web.Request, record: ImageRecord) -> str | None:
    if not _has_thumbnails(request):
        return None
    return absolute(request, image_route(request, record), {"preset": renditions.THUMBNAIL_PRESET})


def etag(record: ImageRecord) -> str:
    return f'"{record.id}.{record.version}"'


def if_match_version(request: web.Request, image_id: str) -> int | None:
    """The version an `If-Match` header pins an update to, or None without one."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    match = re.fullmatch(rf'\s*(?:W/)?"({IMAGE_ID_PATTERN})\.(\d{{1,12}})"\s*', raw)
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


def media_type(request: web.Request) -> str:
    """The request's media type, lowercase, without parameters: `request.content_type`, which
    parses the header with the email package (about 0.5 ms for a multipart upload's, whose
    boundary is new every time, so aiohttp's cache of it never hits)."""
    return request.headers.get("Content-Type", "").partition(";")[0].strip().lower()


async def multipart(request: web.Request) -> MultipartReader:
    try:
        return await request.multipart()
    except ValueError:  # no boundary in the Content-Type
        raise Invalid("the multipart body has no boundary", code="invalid_multipart") from None


async def next_part(reader: MultipartReader, idle: float) -> BodyPartReader | None:
    """The next part of a multipart body, or None at its end; `Invalid` for a malformed one."""
    try:
        part = await within(idle, reader.next())
    except (ValueError, AssertionError, RuntimeError, BadContentDispositionHeader) as exc:
        # (The warning arrives as an exception where warnings are errors, as in the tests.)
        raise Invalid(f"the multipart body is malformed ({exc.__class__.__name__})", code="invalid_multipart") from None
    if part is None:
        return None
    if not isinstance(part, BodyPartReader):
        raise Invalid("nested multipart bodies are not supported", code="invalid_multipart")
    # aiohttp only warns about a broken Content-Disposition (a raw CR/LF in a file name ends its
    # line) and goes on without the name; such a part is refused instead. The names are parsed
    # (and cached) here, synchronously, so the warning filter never spans an await.
    with warnings.catch_warnings():
        warnings.simplefilter("error", BadContentDispositionHeader)
        try:
            _parse_names(part)
        except BadContentDispositionHeader:
            raise Invalid("the multipart body is malformed (BadContentDispositionHeader)", code="invalid_multipart") from None
    return part


def _parse_names(part: BodyPartReader) -> None:
    """`part.name` and `part.filename`, from one parse of the header where aiohttp's properties
    would parse it once each (0.1 ms a parse: it builds its unescaping pattern every call)."""
    cache = getattr(part, "_cache", None)  # where aiohttp's cached properties keep their values
    if isinstance(cache, dict) and not {"name", "filename"} & cache.keys():
        _, params = parse_content_disposition(part.headers.get(hdrs.CONTENT_DISPOSITION))
        cache["name"] = content_disposition_filename(params, "name")
        cache["filename"] = content_disposition_filename(params, "filename")
    part.name, part.filename  # noqa: B018 - parsed (if not above) for their warnings


async def part_chunks(part: BodyPartReader, idle: float) -> AsyncIterator[bytes]:
    while chunk := await within(idle, part.read_chunk(_PART_CHUNK)):
        yield chunk


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
    try:
        # Standard, padded and in one piece (what most clients send): decoded as it is, without
        # the copies below, which cost more than decoding. Anything else is refused here, so the
        # lenient path alone decides about it.
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        pass
    text = _DATA_URL.sub("", value[:256], count=1) + value[256:] if value.startswith("data:") else value
    text = re.sub(r"\s+", "", text).replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("data is not valid base64", code="invalid_base64") from None


async def redirect_to_object(request: web.Request, collection: str, image_id: str) -> web.Response:
    """302 to a presigned link of the image's object, or of the rendition the query asks for."""
    config = request.app[CONFIG]
    ttl = config.storage.presign_ttl_seconds
    # The link stays valid for the TTL; letting the browser reuse the redirect for part of it
    # lets it reuse its cached image too. The service hands a link out for at most half its TTL,
    # so one cached for the other half still works. (An answer, not a raised HTTPFound: building
    # the exception costs more than the rest of the response.)
    headers = {"Cache-Control": _cache_control(ttl)}
    # (Most downloads carry no query at all: then nothing is parsed.)
    if request.query_string and renditions.requested(request.query):
        wanted = renditions.parse(request.query, config.renditions)
        url, spec = await request.app[RENDITIONS].url(collection, image_id, wanted, request.headers.get("Accept", ""), scope=scope(request))
        if spec.negotiated:
            headers["Vary"] = "Accept"
    else:
        url = await service(request).download_url(collection, image_id, scope=scope(request))
    headers["Location"] = absolute(request, url) if url.startswith("/") else url
    return web.Response(status=302, headers=headers)


@functools.cache
def _cache_control(ttl: int) -> str:
    return f"private, max-age={min(ttl // 2, 300)}"
