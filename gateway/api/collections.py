"""Seed 001's API: collections of images, multipart uploads, properties, presigned downloads.

Handlers parse and validate, call the service, and shape the answer; nothing here orders writes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from gateway import __version__
from gateway.api.common import (
    absolute,
    document,
    etag,
    if_match_version,
    media_type,
    multipart,
    next_part,
    part_chunks,
    read_json_object,
    redirect_to_object,
    scope,
    service,
    within,
)
from gateway.api.openapi import IDEMPOTENCY_KEY, IF_MATCH, LIST_PARAMS, REDIRECT, RENDITION_PARAMS, image_ok, json_answer, operation, query_param, ref
from gateway.errors import Invalid, TooLarge, Unsupported
from gateway.keys import BLOBS, CONFIG, METADATA
from gateway.api.compat import parse_projection, project
from gateway.api.params import SKIP_NAMES, list_query, next_cursor, no_query, parse_json
from gateway.api.uploads import guarded_upload
from gateway.metadata.base import iso_time
from gateway.names import collection_name, image_id
from gateway.jsoncodec import json_response

IMAGE_FIELDS = ("image", "file")
JSON_FIELDS = ("json", "json_properties", "properties_json")
TAG = "collections"

_MULTIPART = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "contentMediaType": "application/octet-stream", "description": "the image: JPEG, PNG, GIF, WebP, TIFF, BMP, AVIF or HEIC/HEIF"},
                    "dedupe": {"type": "string", "enum": ["true", "false", "1", "0"], "description": "as the dedupe query parameter"},
                    "json": {"type": "string", "description": "a JSON object of typed properties"},
                },
                "additionalProperties": {"type": "string", "description": "a string property"},
            }
        }
    },
}
_PROPERTIES_BODY = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}


@operation("Service name, version and limits", tag="service", ok={"200": json_answer("service information", {"type": "object"})}, public=True)
async def app_info(request: web.Request) -> web.Response:
    no_query(request.query)
    config = request.app[CONFIG]
    return json_response(
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


@operation("List collection names", tag=TAG, ok={"200": json_answer("names", {"type": "array", "items": {"type": "string"}})}, errors=(503,))
async def list_collections(request: web.Request) -> web.Response:
    no_query(request.query)
    return json_response(await service(request).collections())


@operation("Collection statistics", tag=TAG, ok={"200": json_answer("counts", {"type": "object"})}, errors=(404, 503))
async def get_collection(request: web.Request) -> web.Response:
    no_query(request.query)
    stats = await service(request).collection_stats(collection_name(request.match_info["collection"]))
    return json_response(
        {
            "name": stats.name,
            "documents": stats.documents,
            "bytes": stats.bytes,
            "created_at": iso_time(stats.created_at),
            "updated_at": iso_time(stats.updated_at),
        }
    )


@operation("Delete a collection with its images", tag=TAG, ok={"200": json_answer("what was deleted", {"type": "object"})}, errors=(404, 409, 503))
async def delete_collection(request: web.Request) -> web.Response:
    no_query(request.query)
    name = collection_name(request.match_info["collection"])
    deleted = await service(request).drop_collection(name, scope=scope(request))
    return json_response({"collection": name, "deleted": deleted})


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


@operation(
    "Upload an image (multipart)", tag=TAG, ok=image_ok("the stored image, or with `duplicate: true` the one already holding these bytes (dedupe)"),
    errors=(409, 413, 415, 422, 503), body=_MULTIPART,
    parameters=(query_param("dedupe", {"type": "boolean"}, "answer an image with the same bytes instead of storing a copy (also a form field)"), IDEMPOTENCY_KEY),
)
async def upload_image(request: web.Request) -> web.Response:
    no_query(request.query, allowed=("dedupe",))
    dedupe = _flag(request.query.get("dedupe", "false"), "dedupe")
    collection = collection_name(request.match_info["collection"])
    if media_type(request) != "multipart/form-data":
        raise Unsupported("uploads are multipart/form-data with the file in the field 'image'", code="expected_multipart")
    limits = request.app[CONFIG].limits
    reader = await multipart(request)
    fields: dict[str, Any] = {}
    typed: dict[str, Any] = {}
    async with guarded_upload(request, collection) as upload:
        while (part := await next_part(reader, limits.body_idle_timeout_seconds)) is not None:
            name = part.name or ""
            if name in IMAGE_FIELDS and (part.filename is not None or not upload.has_image):
                await upload.put_image(part_chunks(part, limits.body_idle_timeout_seconds), _client_filename(part.filename))
            elif part.filename is not None:
                raise Invalid(f"unexpected file in field {name!r}; the image goes in 'image'", code="unexpected_file")
            elif name == "dedupe":
                dedupe = _flag(await _field_text(part, 16, limits.body_idle_timeout_seconds), "dedupe")
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
        properties = {**fields, **typed}
        if dedupe and (existing := await upload.existing_copy(properties)) is not None:
            # Not committed: leaving the block removes the copy just stored.
            return json_response({**document(request, existing), "duplicate": True}, headers={"ETag": etag(existing)})
        record = await upload.commit(properties)
    return json_response(document(request, record), headers={"ETag": etag(record)})


def _flag(raw: str, name: str) -> bool:
    if raw not in ("true", "false", "1", "0"):
        raise Invalid(f"{name} is true or false", code="invalid_parameter")
    return raw in ("true", "1")


@operation(
    "List images, newest first", tag=TAG, ok={"200": json_answer("one page of images", {"type": "array", "items": ref("Image")})},
    errors=(404, 503), parameters=LIST_PARAMS,
)
async def list_images(request: web.Request) -> web.Response:
    collection = collection_name(request.match_info["collection"])
    projection = parse_projection(request.query)
    query = list_query(request.query, extra=("fields", "select"))
    caller = scope(request)
    # Counting is cheap on the (collection) index alone; with conditions (an owner's too) it is a scan.
    page = await service(request).find(collection, query, with_total=not query.conditions and caller.owner is None, scope=caller)
    headers = {}
    if page.total is not None:
        headers["X-Total-Count"] = str(page.total)
    if page.has_more and page.records:
        last = page.records[-1]
        params = {k: v for k, v in request.query.items() if k not in (*SKIP_NAMES, "cursor")}
        params["cursor"] = next_cursor(query, last)
        headers["Link"] = f'<{absolute(request, request.path, params)}>; rel="next"'
    docs = [document(request, r) for r in page.records]
    return json_response(docs if projection is None else [project(d, projection) for d in docs], headers=headers)


def _target(request: web.Request) -> tuple[str, str]:
    return collection_name(request.match_info["collection"]), image_id(request.match_info["image_id"])


# Reads of one image and downloads ignore query parameters: browsers, CDNs and cache-busting
# `<img src="...?v=2">` add them, and no parameter changes what these answer.
@operation("One image's document", tag=TAG, ok=image_ok(), errors=(404, 503))
async def get_image(request: web.Request) -> web.Response:
    record = await service(request).get(*_target(request), scope=scope(request))
    return json_response(document(request, record), headers={"ETag": etag(record)})


async def _update_properties(request: web.Request, update: Any) -> web.Response:
    no_query(request.query)
    collection, ident = _target(request)
    body = await read_json_object(request, request.app[CONFIG].limits.max_properties_bytes, "the body")
    record = await update(collection, ident, body, if_version=if_match_version(request, ident), scope=scope(request))
    return json_response(document(request, record), headers={"ETag": etag(record)})


@operation("Replace the properties", tag=TAG, ok=image_ok(), errors=(404, 409, 412, 413, 503), parameters=(IF_MATCH,), body=_PROPERTIES_BODY)
async def replace_properties(request: web.Request) -> web.Response:
    return await _update_properties(request, service(request).replace_properties)


@operation("Merge-patch the properties (RFC 7386)", tag=TAG, ok=image_ok(), errors=(404, 409, 412, 413, 503), parameters=(IF_MATCH,), body=_PROPERTIES_BODY)
async def patch_properties(request: web.Request) -> web.Response:
    """JSON Merge Patch (RFC 7386) of the properties."""
    return await _update_properties(request, service(request).patch_properties)


@operation("Delete an image", tag=TAG, ok={"200": json_answer("the deleted image's id", {"type": "object"})}, errors=(404, 503))
async def delete_image(request: web.Request) -> web.Response:
    no_query(request.query)
    collection, ident = _target(request)
    await service(request).delete(collection, ident, scope=scope(request))
    # `deletedCount` as in the MongoDB result the original answered, for clients that check it.
    return json_response({"collection": collection, "id": ident, "deleted": True, "deletedCount": 1})


@operation("Download (redirect), or a rendition of the image", tag=TAG, ok=REDIRECT, errors=(400, 404, 413, 503), parameters=RENDITION_PARAMS)
async def download(request: web.Request) -> web.Response:
    # A query with rendition parameters is the rendition's (checked strictly); any other is
    # ignored, as for reads of the document.
    return await redirect_to_object(request, *_target(request))
