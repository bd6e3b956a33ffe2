"""Routes and shapes the original service's later releases added: property discovery
(`/fields`), projection (`fields=` / `select=`), and writes by filter on the image listing.

Handlers parse and shape; `gateway.service.discovery` and `gateway.service.bulk` do the work through the service.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from gateway.service import bulk, discovery
from gateway.api.common import absolute, read_json_object, scope, service
from gateway.api.openapi import CONDITION_PARAMS, json_answer, operation, path_param, query_param
from gateway.api.params import LIMIT_NAMES, MAX_LIMIT, SKIP_NAMES, list_query
from gateway.errors import Invalid
from gateway.jsoncodec import json_response
from gateway.keys import CONFIG
from gateway.metadata.query import Condition
from gateway.names import IMAGE_ID_RE, collection_name
from gateway.properties import MAX_PROPERTY_DEPTH, check_key

# The document's own fields (gateway.api.common.document); any other name in a projection is a
# property, as in the original's flat documents.
DOCUMENT_FIELDS = frozenset(
    {"_id", "id", "collection", "image", "time", "content_type", "format", "width", "height", "size", "sha256",
     "properties", "updated_at", "path", "url", "thumbnail_url", "owner", "orientation", "pixel_width", "pixel_height"}
)  # fmt: skip
MAX_PROJECTION = 64
DEFAULT_VALUES = 100
_NOT_FOR_WRITES = (*SKIP_NAMES, "sort", "order", "cursor", "fields", "select")


def _property_path(raw: str, where: str) -> tuple[str, ...]:
    parts = tuple(raw.split("."))
    if len(parts) > MAX_PROPERTY_DEPTH:
        raise Invalid(f"{where}: at most {MAX_PROPERTY_DEPTH} levels", code="invalid_parameter")
    for part in parts:
        try:
            check_key(part, where)
        except Invalid as exc:
            raise Invalid(exc.message, code="invalid_parameter") from None
    return parts


def parse_projection(params: Any) -> tuple[tuple[str, ...], ...] | None:
    """`fields=a,b` (or the later API's `select=a b`): document fields, `properties.x.y`, or
    bare property names. None when neither is given."""
    given = [name for name in ("fields", "select") if name in params]
    if not given:
        return None
    if len(given) > 1 or len(params.getall(given[0])) > 1:
        raise Invalid("give fields or select, once", code="invalid_parameter")
    names = [n for n in re.split(r"[\s,]+", params[given[0]]) if n]
    if not names or len(names) > MAX_PROJECTION:
        raise Invalid(f"{given[0]} names 1 to {MAX_PROJECTION} fields", code="invalid_parameter")
    paths: list[tuple[str, ...]] = []
    for name in names:
        if name in DOCUMENT_FIELDS:
            paths.append((name,))
        else:
            dotted = name[len("properties.") :] if name.startswith("properties.") else name
            paths.append(("properties", *_property_path(dotted, given[0])))
    return tuple(paths)


def project(doc: dict[str, Any], paths: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """The document with only `paths` (and its ids, which every document keeps)."""
    out: dict[str, Any] = {"_id": doc["_id"], "id": doc["id"]}
    for path in paths:
        source: Any = doc
        for key in path:
            if not isinstance(source, dict) or key not in source:
                break
            source = source[key]
        else:
            target = out
            for key in path[:-1]:
                target = target.setdefault(key, {})
            target[path[-1]] = source
    return out


def _conditions_only(request: web.Request, *, extra: tuple[str, ...], default_limit: int) -> tuple[tuple[Condition, ...], int]:
    """The listing's conditions (filter, property.KEY, ids, sha256, from, to) and a limit (at
    most MAX_LIMIT), for routes where sorting and offsets mean nothing. The service holds them to
    the caller's scope."""
    for name in request.query.keys():
        if name in _NOT_FOR_WRITES:
            raise Invalid(f"{name} does not apply here", code="invalid_parameter")
    query = list_query(request.query, extra=extra, default_limit=default_limit)
    if request.query.get("all", "false") not in ("true", "false"):
        raise Invalid("all is true or false", code="invalid_parameter")
    if "all" in extra and not query.conditions and request.query.get("all") != "true":
        raise Invalid(
            "a write by filter needs a condition (filter, property.KEY, ids, sha256, from or to); all=true means every image",
            code="filter_required",
        )
    return query.conditions, query.limit


async def _known_collection(request: web.Request) -> str:
    name = collection_name(request.match_info["collection"])
    await service(request).collection_stats(name)  # NotFound for an unknown collection
    return name


TAG = "collections"
_KEY = path_param("key", {"type": "string", "pattern": "^[^$.][^.]*(\\.[^$.][^.]*)*$"}, "a property key, nested ones dotted")
_BULK_PARAMS = (
    *CONDITION_PARAMS,
    query_param("limit", {"type": "integer", "minimum": 1, "maximum": bulk.MAX_BULK}, f"images touched per call (default {bulk.MAX_BULK})"),
    query_param("all", {"type": "boolean"}, "true to act on every image when no condition is given (otherwise refused: filter_required)"),
)
_PROPERTIES_BODY = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}


@operation(
    f"Property keys in use (nested ones dotted), from the newest {discovery.SCAN_LIMIT} matching images", tag=TAG,
    ok={"200": json_answer("fields [{key, count}], scanned, complete", {"type": "object"})}, errors=(404, 503), parameters=CONDITION_PARAMS,
)
async def list_fields(request: web.Request) -> web.Response:
    collection = await _known_collection(request)
    if any(n in request.query for n in LIMIT_NAMES):
        raise Invalid("the field list is not paged", code="invalid_parameter")
    conditions, _ = _conditions_only(request, extra=(), default_limit=1)
    answer = await discovery.property_keys(service(request), collection, conditions, scope=scope(request))
    return json_response({"collection": collection, **answer})


@operation(
    "Distinct values of one property with counts, most frequent first", tag=TAG,
    ok={"200": json_answer("values [{value, count}], more, scanned, complete", {"type": "object"})}, errors=(404, 503),
    parameters=(_KEY, *CONDITION_PARAMS, query_param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, f"values at most (default {DEFAULT_VALUES})")),
)
async def field_values(request: web.Request) -> web.Response:
    collection = await _known_collection(request)
    path = _property_path(request.match_info["key"], "key")
    conditions, limit = _conditions_only(request, extra=(), default_limit=DEFAULT_VALUES)
    answer = await discovery.distinct_values(service(request), collection, path, conditions, limit, scope=scope(request))
    return json_response({"collection": collection, **answer})


@operation(
    f"Merge-patch every image matching the conditions (at most `limit`, default {bulk.MAX_BULK})", tag=TAG,
    ok={"200": json_answer("matched, updated, unchanged, more, and `after`/`next` to continue", {"type": "object"})}, errors=(404, 409, 413, 503),
    parameters=(*_BULK_PARAMS, query_param("after", {"type": "string"}, "continue after this image id (the previous answer's `after`)")), body=_PROPERTIES_BODY,
)
async def patch_matching(request: web.Request) -> web.Response:
    collection = collection_name(request.match_info["collection"])
    conditions, limit = _conditions_only(request, extra=("all", "after"), default_limit=bulk.MAX_BULK)
    after = request.query.get("after")
    if after is not None and IMAGE_ID_RE.fullmatch(after) is None:
        raise Invalid("after is an image id (the `after` of a previous answer)", code="invalid_parameter")
    patch = await read_json_object(request, request.app[CONFIG].limits.max_properties_bytes, "the body")
    result = await bulk.patch_matching(
        service(request), collection, conditions, patch, limit=limit, after_id=after.lower() if after else None, scope=scope(request)
    )
    answer: dict[str, Any] = {"matched": result.matched, "updated": result.changed, "unchanged": result.unchanged, "more": result.more, "after": None, "next": None}
    headers = {}
    if result.more and result.last_id is not None:
        params = {k: v for k, v in request.query.items() if k != "after"}
        answer["after"] = result.last_id
        answer["next"] = absolute(request, request.path, {**params, "after": result.last_id})
        headers["Link"] = f'<{answer["next"]}>; rel="next"'
    return json_response(answer, headers=headers)


@operation(
    f"Delete every image matching the conditions (at most `limit`, default {bulk.MAX_BULK})", tag=TAG,
    ok={"200": json_answer("matched, deleted, more", {"type": "object"})}, errors=(404, 503), parameters=_BULK_PARAMS,
)
async def delete_matching(request: web.Request) -> web.Response:
    collection = collection_name(request.match_info["collection"])
    conditions, limit = _conditions_only(request, extra=("all",), default_limit=bulk.MAX_BULK)
    result = await bulk.delete_matching(service(request), collection, conditions, limit=limit, scope=scope(request))
    return json_response({"matched": result.matched, "deleted": result.changed, "more": result.more})

