"""Seed 000's API: `/v1/images`, base64 JSON uploads and offset/limit pages, over the configured
default collection (the same images are visible through the collections API)."""

from __future__ import annotations

from aiohttp import web

from gateway.api.common import absolute, decode_base64, document, read_json_object, redirect_to_object, scope, service
from gateway.api.openapi import IDEMPOTENCY_KEY, OFFSET, REDIRECT, RENDITION_PARAMS, image_ok, json_answer, operation, page_size, ref
from gateway.errors import Invalid
from gateway.api.uploads import guarded_upload, in_chunks
from gateway.keys import CONFIG
from gateway.api.params import list_query, no_query
from gateway.metadata.query import ListQuery
from gateway.names import image_id
from gateway.jsoncodec import json_response

_UPLOAD_FIELDS = {"data", "filename", "properties"}
# Seed 000 names no default page size; this API keeps its own.
DEFAULT_LIMIT = 50
TAG = "v1"
_PAGE = {
    "type": "object",
    "properties": {"kind": {"type": "string"}, "next": {"type": ["string", "null"]}, "previous": {"type": ["string", "null"]}, "data": {"type": "array", "items": ref("Image")}},
}
_UPLOAD = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["data"],
                "additionalProperties": False,
                "properties": {"data": {"type": "string", "description": "base64 or a data: URL"}, "filename": {"type": "string"}, "properties": {"type": "object"}},
            }
        }
    },
}


def _collection(request: web.Request) -> str:
    return request.app[CONFIG].default_collection


@operation(
    "Upload an image (base64 JSON)", tag=TAG, ok={"201": json_answer("the stored image", ref("Image"))}, errors=(409, 413, 415, 422, 503),
    parameters=(IDEMPOTENCY_KEY,), body=_UPLOAD,
)  # fmt: skip
async def create_image(request: web.Request) -> web.Response:
    no_query(request.query)
    limits = request.app[CONFIG].limits
    # Base64 is 4/3 of the bytes; line breaks and JSON add a little more.
    max_body = limits.max_upload_bytes * 4 // 3 + limits.max_upload_bytes // 20 + limits.max_properties_bytes + 4096
    body = await read_json_object(request, max_body, "the body")
    unknown = set(body) - _UPLOAD_FIELDS
    if unknown:
        raise Invalid(f"unknown field {sorted(unknown)[0][:64]!r}; expected data, filename, properties", code="unknown_field")
    filename = body.get("filename")
    if filename is not None and not isinstance(filename, str):
        raise Invalid("filename must be a string", code="invalid_body")
    properties = body.get("properties", {})
    data = decode_base64(body.get("data"))
    del body
    async with guarded_upload(request, _collection(request)) as upload:
        await upload.put_image(in_chunks(data), filename)
        record = await upload.commit(properties)
    return json_response(document(request, record), status=201)


@operation("List images (offset pages)", tag=TAG, ok={"200": json_answer("one page", _PAGE)}, errors=(503,), parameters=(OFFSET, page_size(DEFAULT_LIMIT)))
async def list_images(request: web.Request) -> web.Response:
    no_query(request.query, allowed=("offset", "limit"))
    parsed = list_query(request.query, default_limit=DEFAULT_LIMIT)
    query = ListQuery(limit=parsed.limit, skip=parsed.skip)
    page = await service(request).find(_collection(request), query, with_total=False, scope=scope(request))
    path = "/v1/images"

    def link(offset: int) -> str:
        return absolute(request, path, {"offset": str(offset), "limit": str(query.limit)})

    return json_response(
        {
            "kind": "Collection",
            "next": link(query.skip + query.limit) if page.has_more else None,
            "previous": link(max(0, query.skip - query.limit)) if query.skip > 0 else None,
            "data": [document(request, r) for r in page.records],
        }
    )


# Like seed 001's, reads of one image and downloads ignore query parameters (cache busters).
@operation("One image's document", tag=TAG, ok=image_ok(), errors=(404, 503))
async def get_image(request: web.Request) -> web.Response:
    record = await service(request).get(_collection(request), image_id(request.match_info["image_id"]), scope=scope(request))
    return json_response(document(request, record))


@operation("Delete an image", tag=TAG, ok={"200": json_answer("the deleted id", {"type": "object"})}, errors=(404, 503))
async def delete_image(request: web.Request) -> web.Response:
    no_query(request.query)
    ident = image_id(request.match_info["image_id"])
    await service(request).delete(_collection(request), ident, scope=scope(request))
    return json_response({"image_id": ident})


@operation("Download (redirect), or a rendition of the image", tag=TAG, ok=REDIRECT, errors=(400, 404, 413, 503), parameters=RENDITION_PARAMS)
async def download(request: web.Request) -> web.Response:
    return await redirect_to_object(request, _collection(request), image_id(request.match_info["image_id"]))
