"""The OpenAPI 3.1 document, generated from the routes the app registers; served at
`/openapi.json` and browsable at `/docs` (Swagger UI).

Each handler carries its operation, attached by `@operation(...)` (aiohttp-apispec's idea: the
description lives on the handler, the document is made by walking `app.router`). Path parameters
come from each route's canonical path, so they cannot drift from the table. A handler routed on
several paths is documented once, at the first (its main route); the others are listed as its
`x-aliases`. An operation marked `public` needs no credentials when authentication is on: the
auth middleware reads that mark from the matched handler, so the document and the enforcement
cannot disagree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from gateway import __version__
from gateway.api.params import MAX_IDS, MAX_LIMIT, MAX_SKIP, OPERATORS
from gateway.metadata.query import DEFAULT_LIMIT
from gateway.names import COLLECTION_PATTERN, IMAGE_ID_INPUT_PATTERN, IMAGE_ID_PATTERN

Spec = dict[str, Any]
H = TypeVar("H", bound=Callable[..., Any])

# One reusable response per error status; every one carries the JSON error body.
ERROR_STATUSES = {
    400: "The request is malformed (bad parameter, body, multipart or JSON).",
    401: "Credentials are missing or not valid (authentication on).",
    403: "Authenticated but not allowed, or a download link that is tampered with or expired.",
    404: "No such collection, image or route.",
    405: "The method is not allowed on this path.",
    408: "The client stopped sending its body for longer than the idle timeout.",
    409: "A concurrent change conflicts with this one.",
    412: "If-Match names a version that is no longer current.",
    413: "The body, a field or the image is larger than the configured limit.",
    415: "The body is not of the expected media type, or the file is not a supported image.",
    422: "An Idempotency-Key reused for a different request.",
    460: "tus checksum extension: the body does not match its Upload-Checksum.",
    503: "A dependency (object store, database, identity service) failed or timed out.",
}
# Any route can answer these: a malformed request line or headers, an unknown method, and
# (when authentication is on) missing or refused credentials.
_ALWAYS = (400, 405)
_AUTH = (401, 403)

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
_IMAGE_SCHEMA = {
    "type": "object",
    "required": ["id", "collection", "image", "time", "content_type", "width", "height", "size", "sha256", "url"],
    "properties": {
        "_id": {"type": "string"},
        "id": {"type": "string", "pattern": f"^{IMAGE_ID_PATTERN}$"},
        "collection": {"type": "string"},
        "image": {"type": "string", "description": "the uploaded file name, sanitised"},
        "time": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "content_type": {"type": "string"},
        "format": {"type": "string"},
        "width": {"type": "integer", "description": "as displayed (EXIF orientations 5-8 swap the stored size)"},
        "height": {"type": "integer", "description": "as displayed"},
        "pixel_width": {"type": "integer", "description": "as stored"},
        "pixel_height": {"type": "integer", "description": "as stored"},
        "orientation": {"type": ["integer", "null"], "minimum": 1, "maximum": 8, "description": "the EXIF orientation, null without one"},
        "size": {"type": "integer"},
        "sha256": {"type": "string"},
        "path": {"type": "string"},
        "url": {"type": "string", "description": "this image's download route"},
        "thumbnail_url": {"type": ["string", "null"], "description": "the download route of the `thumb` preset's rendition (null without that preset)"},
        "owner": {"type": "string", "description": "the authenticated uploader"},
        "duplicate": {"type": "boolean", "description": "true on a dedupe upload answered with the image already holding these bytes"},
        "properties": {"type": "object"},
    },
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_answer(description: str, schema: dict[str, Any]) -> Spec:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def image_ok(description: str = "the image document") -> dict[str, Spec]:
    return {"200": json_answer(description, ref("Image"))}


def query_param(name: str, schema: dict[str, Any], description: str) -> Spec:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def path_param(name: str, schema: dict[str, Any], description: str) -> Spec:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


# Every path parameter the routes use, by name; a route with another name fails the document.
PATH_PARAMETERS = {
    "collection": path_param("collection", {"type": "string", "pattern": f"^{COLLECTION_PATTERN}$"}, "collection name"),
    "image_id": path_param("image_id", {"type": "string", "pattern": f"^{IMAGE_ID_INPUT_PATTERN}$"}, "image id (24 hex digits)"),
    "key": path_param("key", {"type": "string"}, "object key"),
    "upload_id": path_param("upload_id", {"type": "string", "pattern": "^[0-9a-f]{32}$"}, "upload id (32 hex digits), from the upload's creation"),
}
IF_MATCH = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}, "description": "an ETag from a previous answer"}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "a repeat with the same key (same caller and collection, within uploads.idempotency_ttl_seconds) answers what the first request answered, without storing again; the same key with another request is a 422",
}  # fmt: skip


def header_param(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> Spec:
    return {"name": name, "in": "header", "required": required, "description": description, "schema": schema}


def page_size(default: int) -> Spec:
    return query_param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, f"page size (default {default})")


# Conditions the listing and the writes by filter share.
CONDITION_PARAMS = (
    query_param("filter", {"type": "string"}, f"a JSON object of conditions on properties, `time` and `_id`/`id` ({' '.join(OPERATORS)}; ids take $eq $ne $in $nin)"),
    query_param("from", {"type": "string", "format": "date-time"}, "uploaded at or after (ISO 8601), as filter {time: {$gte}}"),
    query_param("to", {"type": "string", "format": "date-time"}, "uploaded at or before (ISO 8601), as filter {time: {$lte}}"),
    query_param("ids", {"type": "string"}, f"exactly these images: ids comma-separated or repeated (at most {MAX_IDS})"),
    query_param("sha256", {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}, "images with these bytes"),
)
LIST_PARAMS = (
    query_param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, f"page size (default {DEFAULT_LIMIT}, the original's); aliases `batch_size`, `count`"),
    query_param("skip", {"type": "integer", "minimum": 0, "maximum": MAX_SKIP}, "records to skip; aliases `start_index`, `index`, `offset`"),
    query_param(
        "sort", {"type": "string"},
        '`time`, `-time` (the default), `<field>` or `-<field>` (a property, `time` or `_id`), or a sort document: `{"score": -1, "time": 1}`; '
        "property values order as missing/null < numbers < strings < objects < arrays < booleans",
    ),
    query_param("order", {"type": "string", "enum": ["1", "-1", "asc", "desc"]}, "direction of sort=<field> (the later API's form)"),
    *CONDITION_PARAMS,
    query_param("fields", {"type": "string"}, "return only these fields (comma- or space-separated; a name that is no document field is a property); alias `select`"),
    query_param("cursor", {"type": "string"}, "the `next` cursor of a previous page (see the Link header)"),
)
OFFSET = query_param("offset", {"type": "integer", "minimum": 0, "maximum": MAX_SKIP}, "records to skip")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
REDIRECT = {"302": {"description": "redirect to a presigned link valid for the configured TTL", "headers": {"Location": {"schema": {"type": "string"}}}}}


@dataclass(frozen=True)
class Operation:
    """One operation: its success answers (`ok`: status -> response), the error statuses it can
    give besides the ones every route can, its query and header parameters and its body."""

    summary: str
    tag: str
    ok: dict[str, Spec]
    errors: tuple[int, ...] = ()
    parameters: tuple[Spec, ...] = ()
    body: Spec | None = None
    public: bool = False

    def spec(self, path: str, aliases: list[str]) -> Spec:
        statuses = sorted({*_ALWAYS, *self.errors, *(() if self.public else _AUTH)})
        op: Spec = {
            "summary": self.summary,
            "tags": [self.tag],
            "responses": {**self.ok, **{str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}},
        }
        if aliases:
            op["description"] = "Also served at " + ", ".join(f"`{a}`" for a in aliases) + "."
            op["x-aliases"] = aliases
        # Path parameters follow the path; an operation may describe one itself (an enum, say).
        given = {p["name"]: p for p in self.parameters if p["in"] == "path"}
        parameters = [given.get(name) or PATH_PARAMETERS[name] for name in _PLACEHOLDER.findall(path)]
        parameters += [p for p in self.parameters if p["in"] != "path"]
        if parameters:
            op["parameters"] = parameters
        if self.body is not None:
            op["requestBody"] = self.body
        if self.public:
            op["security"] = []
        return op


# Supabase's render parameters (and presets); any of them makes the download a rendition.
RENDITION_PARAMS = (
    query_param("width", {"type": "integer", "minimum": 1}, "rendition width in pixels, at most renditions.max_dimension (alias `w`)"),
    query_param("w", {"type": "integer", "minimum": 1}, "alias of width"),
    query_param("height", {"type": "integer", "minimum": 1}, "rendition height in pixels, at most renditions.max_dimension (alias `h`)"),
    query_param("h", {"type": "integer", "minimum": 1}, "alias of height"),
    query_param("resize", {"type": "string", "enum": ["cover", "contain", "fill"]}, "cover crops to fill (default with both sides), contain fits inside, fill stretches"),
    query_param("format", {"type": "string", "enum": ["origin", "jpeg", "png", "webp", "avif", "auto"]}, "output format; auto picks AVIF or WebP from Accept (the redirect then varies on Accept)"),
    query_param("quality", {"type": "integer", "minimum": 20, "maximum": 100}, "lossy quality (default 80)"),
    query_param("enlarge", {"type": "boolean"}, "allow a rendition larger than the source (default false)"),
    query_param("preset", {"type": "string"}, "a configured preset (thumb, preview, ...); with renditions.free_sizes false the only parameter allowed"),
)


def operation(
    summary: str,
    *,
    tag: str,
    ok: dict[str, Spec],
    errors: tuple[int, ...] = (),
    parameters: tuple[Spec, ...] = (),
    body: Spec | None = None,
    public: bool = False,
) -> Callable[[H], H]:
    """Attach the handler's OpenAPI operation to it (as `handler.__openapi__`)."""

    def attach(handler: H) -> H:
        setattr(handler, "__openapi__", Operation(summary, tag, ok, errors, parameters, body, public))
        return handler

    return attach


def operation_of(handler: Any) -> Operation | None:
    found = getattr(handler, "__openapi__", None)
    return found if isinstance(found, Operation) else None


def _routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(method, path template, handler) of every route the app serves. A HEAD that a GET's
    handler answers is that GET's; a HEAD or OPTIONS with its own handler (tus's) is an
    operation of its own. CORS preflights are answered by the edge, never routed."""
    found = []
    for route in app.router.routes():
        if route.method == "*" or route.resource is None:
            continue
        if route.method == "HEAD" and any(other.method == "GET" and other.handler is route.handler for other in route.resource):
            continue
        found.append((route.method.lower(), route.resource.canonical, route.handler))
    return found


def registered(app: web.Application) -> set[tuple[str, str]]:
    return {(method, path) for method, path, _ in _routes(app)}


def _main_routes(app: web.Application) -> dict[tuple[str, str], tuple[Operation, list[str]]]:
    """(method, main path) -> (operation, alias paths): a handler's first route is its main one."""
    main: dict[tuple[str, Any], str] = {}
    found: dict[tuple[str, str], tuple[Operation, list[str]]] = {}
    for method, path, handler in _routes(app):
        op = operation_of(handler)
        if op is None:
            continue
        first = main.setdefault((method, handler), path)
        if first == path:
            found[(method, path)] = (op, [])
            continue
        # An alias is documented by its main route's parameters, so it must take the same ones.
        if _PLACEHOLDER.findall(path) != _PLACEHOLDER.findall(first):
            raise ValueError(f"{method.upper()} {path} shares its handler with {first} but not its path parameters")
        found[(method, first)][1].append(path)
    return found


def described(app: web.Application) -> dict[str, dict[str, Spec]]:
    """Every documented route, aliases included: path -> method -> operation."""
    paths: dict[str, dict[str, Spec]] = {}
    for (method, path), (op, aliases) in _main_routes(app).items():
        for each in (path, *aliases):
            paths.setdefault(each, {})[method] = op.spec(each, [])
    return paths


def public_routes(app: web.Application) -> set[tuple[str, str]]:
    return {(m, p) for p, methods in described(app).items() for m, op in methods.items() if op.get("security") == []}


def document(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Spec]] = {}
    for (method, path), (op, aliases) in _main_routes(app).items():
        paths.setdefault(path, {})[method] = op.spec(path, aliases)
    return {
        "openapi": "3.1.0",
        "info": {"title": "image-gateway", "version": __version__, "description": "Images in an object store, metadata in a database, downloads through presigned links."},
        "paths": paths,
        "security": [{"bearer": []}, {"apiKey": []}, {"cookie": []}],
        "components": {
            "schemas": {"Error": _ERROR_SCHEMA, "Image": _IMAGE_SCHEMA},
            "responses": {f"E{s}": json_answer(text, ref("Error")) for s, text in ERROR_STATUSES.items()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "forwarded to the identification URL, or an OIDC JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "jwt", "description": "or the `token` cookie; its token is checked as a bearer token"},
            },
        },
    }


@operation("This document", tag="service", ok={"200": json_answer("OpenAPI 3.1", {"type": "object"})}, public=True)
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document(request.app), dumps=lambda value: json.dumps(value, separators=(",", ":")))
