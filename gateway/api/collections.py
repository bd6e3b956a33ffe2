"""Seed 001's API: collections of images, multipart uploads, properties, presigned downloads.

Handlers parse and validate, call the service, and shape the answer; nothing here orders writes.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.multipart import BadContentDispositionHeader

from gateway import __version__
from gateway.api.common import (
    absolute,
    document,
    etag,
    if_match_version,
    iso,
    read_json_object,
    redirect_to_object,
    within,
    service,
)
from gateway.api.uploads import guarded_upload
from gateway.errors import Invalid, TooLarge, Unsupported
from gateway.keys import BLOBS, CONFIG, METADATA, OWNER_SCOPE
from gateway.api.params import encode_cursor, list_query, no_query, parse_json
from gateway.metadata.query import Cursor, owned_by
from gateway.names import collection_name, image_id

IMAGE_FIELDS = ("image", "file")
JSON_FIELDS = ("json", "json_properties", "properties_json")
_PART_CHUNK = 256 * 1024


async def app_info(request: web.Request) -> web.Response:
    no_query(request.query)
    config = request.app[CONFIG]
    return web.json_response(
        {
            "name": "image-gateway",
            "version": __version__,
            "storage": request.app[BLOBS].name,
            "metadata": request.app[METADATA].name,
            "authentication": config.auth.enabled,
            "default_collection": config.default_collection,
            "limits": {
                "max_upload_bytes": config.limits.max_upload_bytes,
                "max_image_pixels": config.limits.max_image_pixels,
            },
        }
    )


async def list_collections(request: web.Request) -> web.Response:
    no_query(request.query)
    return web.json_response(await service(request).collections())


async def get_collection(request: web.Request) -> web.Response:
    no_query(request.query)
    stats = await service(request).collection_stats(collection_name(request.match_info["collection"]))
    return web.json_response(
        {
            "name": stats.name,
            "documents": stats.documents,
            "bytes": stats.bytes,
            "created_at": iso(stats.created_at),
            "updated_at": iso(stats.updated_at),
        }
    )


async def delete_collection(request: web.Request) -> web.Response:
    no_query(request.query)
    name = collection_name(request.match_info["collection"])
    deleted = await service(request).drop_collection(name)
    return web.json_response({"collection": name, "deleted": deleted})


async def _part_chunks(part: BodyPartReader, idle: float) -> AsyncIterator[bytes]:
    while chunk := await within(idle, part.read_chunk(_PART_CHUNK)):
        yield chunk


async def _field_text(part: BodyPartReader, max_bytes: int, idle: float) -> str:
    data = bytearray()
    while chunk := await within(idle, part.read_chunk(16 * 1024)):
        data += chunk
        if len(data) > max_bytes:
            raise TooLarge(f"form field {part.name!r} is larger than {max_bytes} bytes", code="field_too_large")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid(f"form field {part.name!r} is not valid UTF-8", code="invalid_field") from None


def _client_filename(raw: str | None) -> str | None:
    """Browsers (per the HTML standard) and aiohttp percent-encode quotes, line breaks and
    non-ASCII in a multipart file name; decode that when it is well-formed UTF-8."""
    if raw is None or "%" not in raw:
        return raw
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        return raw


async def _next_part(reader: MultipartReader, idle: float) -> BodyPartReader | None:
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
            part.name, part.filename  # noqa: B018 - parsed for their warnings
        except BadContentDispositionHeader:
            raise Invalid("the multipart body is malformed (BadContentDispositionHeader)", code="invalid_multipart") from None
    return part


async def upload_image(request: web.Request) -> web.Response:
    no_query(request.query)
    collection = collection_name(request.match_info["collection"])
    if request.content_type != "multipart/form-data":
        raise Unsupported("uploads are multipart/form-data with the file in the field 'image'", code="expected_multipart")
    limits = request.app[CONFIG].limits
    try:
        reader = await request.multipart()
    except ValueError:  # no boundary in the Content-Type
        raise Invalid("the multipart body has no boundary", code="invalid_multipart") from None
    fields: dict[str, Any] = {}
    typed: dict[str, Any] = {}
    async with guarded_upload(request, collection) as upload:
        while (part := await _next_part(reader, limits.body_idle_timeout_seconds)) is not None:
            name = part.name or ""
            if name in IMAGE_FIELDS and (part.filename is not None or not upload.has_image):
                await upload.put_image(_part_chunks(part, limits.body_idle_timeout_seconds), _client_filename(part.filename))
            elif part.filename is not None:
                raise Invalid(f"unexpected file in field {name!r}; the image goes in 'image'", code="unexpected_file")
            elif name in JSON_FIELDS:
                value = parse_json(await _field_text(part, limits.max_properties_bytes, limits.body_idle_timeout_seconds), f"form field {name!r}")
                if not isinstance(value, dict):
                    raise Invalid(f"form field {name!r} must hold a JSON object", code="invalid_properties")
                typed.update(value)
            else:
                if len(fields) >= limits.max_form_fields:
                    raise Invalid(f"at most {limits.max_form_fields} form fields", code="too_many_fields")
                fields[name] = await _field_text(part, limits.max_properties_bytes, limits.body_idle_timeout_seconds)
        if not upload.has_image:
            raise Invalid("the upload has no file in the field 'image'", code="missing_image")
        # Plain fields are string properties; a JSON field supplies typed ones and wins.
        record = await upload.commit({**fields, **typed})
    return web.json_response(document(request, record), headers={"ETag": etag(record)})


async def list_images(request: web.Request) -> web.Response:
    collection = collection_name(request.match_info["collection"])
    query = owned_by(list_query(request.query), request.get(OWNER_SCOPE))
    # Counting is cheap on the (collection) index alone; with conditions it is a scan.
    page = await service(request).find(collection, query, with_total=not query.conditions)
    headers = {}
    if page.total is not None:
        headers["X-Total-Count"] = str(page.total)
    if page.has_more and page.records:
        last = page.records[-1]
        params = {k: v for k, v in request.query.items() if k not in ("skip", "offset", "cursor")}
        params["cursor"] = encode_cursor(Cursor(last.time, last.id), query.descending)
        headers["Link"] = f'<{absolute(request, request.path, params)}>; rel="next"'
    return web.json_response([document(request, r) for r in page.records], headers=headers)


def _target(request: web.Request) -> tuple[str, str]:
    return collection_name(request.match_info["collection"]), image_id(request.match_info["image_id"])


async def get_image(request: web.Request) -> web.Response:
    no_query(request.query)
    record = await service(request).get(*_target(request))
    return web.json_response(document(request, record), headers={"ETag": etag(record)})


async def _update_properties(request: web.Request, method: str) -> web.Response:
    no_query(request.query)
    collection, ident = _target(request)
    body = await read_json_object(request, request.app[CONFIG].limits.max_properties_bytes, "the body")
    update = getattr(service(request), method)
    record = await update(collection, ident, body, if_version=if_match_version(request, ident))
    return web.json_response(document(request, record), headers={"ETag": etag(record)})


async def replace_properties(request: web.Request) -> web.Response:
    return await _update_properties(request, "replace_properties")


async def patch_properties(request: web.Request) -> web.Response:
    """JSON Merge Patch (RFC 7386) of the properties."""
    return await _update_properties(request, "patch_properties")


async def delete_image(request: web.Request) -> web.Response:
    no_query(request.query)
    collection, ident = _target(request)
    await service(request).delete(collection, ident)
    return web.json_response({"collection": collection, "id": ident, "deleted": True})


async def download(request: web.Request) -> web.Response:
    no_query(request.query)
    return await redirect_to_object(request, *_target(request))


def routes() -> list[web.RouteDef]:
    table = [
        web.get("/", app_info),
        web.get("/collections", list_collections),
        web.get("/collections/{collection}", get_collection),
        web.delete("/collections/{collection}", delete_collection),
    ]
    # The original service answered under /images, /documents and /items alike.
    for noun in ("images", "documents", "items"):
        base = f"/collections/{{collection}}/{noun}"
        table += [
            web.get(base, list_images),
            web.post(base, upload_image),
            web.get(base + "/{image_id}", get_image),
            web.get(base + "/{image_id}/info", get_image),
            web.put(base + "/{image_id}", replace_properties),
            web.patch(base + "/{image_id}", patch_properties),
            web.delete(base + "/{image_id}", delete_image),
            web.get(base + "/{image_id}/image", download),
            web.get(base + "/{image_id}/file", download),
        ]
    return table
