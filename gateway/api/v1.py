"""Seed 000's API: `/v1/images`, base64 JSON uploads and offset/limit pages, over the configured
default collection (the same images are visible through the collections API)."""

from __future__ import annotations

from aiohttp import web

from gateway.api.common import absolute, decode_base64, document, read_json_object, redirect_to_object, service
from gateway.api.uploads import guarded_upload, in_chunks
from gateway.errors import Invalid
from gateway.keys import CONFIG, OWNER_SCOPE
from gateway.api.params import list_query, no_query
from gateway.metadata.query import ListQuery, owned_by
from gateway.names import image_id

_UPLOAD_FIELDS = {"data", "filename", "properties"}


def _collection(request: web.Request) -> str:
    return request.app[CONFIG].default_collection


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
    return web.json_response(document(request, record), status=201)


async def list_images(request: web.Request) -> web.Response:
    no_query(request.query, allowed=("offset", "limit"))
    parsed = list_query(request.query)
    query = owned_by(ListQuery(limit=parsed.limit, skip=parsed.skip), request.get(OWNER_SCOPE))
    page = await service(request).find(_collection(request), query, with_total=False)
    path = "/v1/images"

    def link(offset: int) -> str:
        return absolute(request, path, {"offset": str(offset), "limit": str(query.limit)})

    return web.json_response(
        {
            "kind": "Collection",
            "next": link(query.skip + query.limit) if page.has_more else None,
            "previous": link(max(0, query.skip - query.limit)) if query.skip > 0 else None,
            "data": [document(request, r) for r in page.records],
        }
    )


async def get_image(request: web.Request) -> web.Response:
    no_query(request.query)
    record = await service(request).get(_collection(request), image_id(request.match_info["image_id"]))
    return web.json_response(document(request, record))


async def delete_image(request: web.Request) -> web.Response:
    no_query(request.query)
    ident = image_id(request.match_info["image_id"])
    await service(request).delete(_collection(request), ident)
    return web.json_response({"image_id": ident})


async def download(request: web.Request) -> web.Response:
    no_query(request.query)
    return await redirect_to_object(request, _collection(request), image_id(request.match_info["image_id"]))


def routes() -> list[web.RouteDef]:
    table: list[web.RouteDef] = []
    for base in ("/v1/images", "/v1/images/"):
        table += [web.get(base, list_images), web.post(base, create_image)]
    for base in ("/v1/images/{image_id}", "/v1/images/{image_id}/"):
        table += [web.get(base, get_image), web.delete(base, delete_image)]
    table += [web.get("/v1/images/{image_id}/image", download), web.get("/v1/images/{image_id}/image/", download)]
    return table
