"""The OpenAPI 3.1 description of every route, served at `/openapi.json`, browsable at `/docs`.

Routes are described in groups, one dict per module that registers them (path -> method ->
operation). A route added to the app but not to a group fails `tests/test_openapi.py`; add its
group to `GROUPS`. Operations marked `public` need no credentials when authentication is on: the
auth middleware reads that mark from here, so the document and the enforcement cannot disagree.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from aiohttp import web

from gateway import __version__

Operation = dict[str, Any]
Group = dict[str, dict[str, Operation]]

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
        "id": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
        "collection": {"type": "string"},
        "image": {"type": "string", "description": "the uploaded file name, sanitised"},
        "time": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "content_type": {"type": "string"},
        "format": {"type": "string"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "size": {"type": "integer"},
        "sha256": {"type": "string"},
        "path": {"type": "string"},
        "url": {"type": "string", "description": "this image's download route"},
        "owner": {"type": "string", "description": "the authenticated uploader"},
        "properties": {"type": "object"},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path_param(name: str, pattern: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string", "pattern": pattern}}


def _query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


COLLECTION = _path_param("collection", "^[a-z0-9][a-z0-9._-]{0,62}$", "collection name")
IMAGE_ID = _path_param("image_id", "^[0-9a-fA-F]{24}$", "image id (24 hex digits)")
IF_MATCH = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}, "description": "an ETag from a previous answer"}
LIST_PARAMS = [
    _query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size (default 50)"),
    _query_param("skip", {"type": "integer", "minimum": 0, "maximum": 10_000_000}, "records to skip"),
    _query_param("sort", {"type": "string", "enum": ["time", "-time"]}, "order by upload time"),
    _query_param("filter", {"type": "string"}, "a JSON object of property conditions ($eq $ne $gt $gte $lt $lte $in $nin $exists)"),
    _query_param("cursor", {"type": "string"}, "the `next` cursor of a previous page (see the Link header)"),
]


def operation(
    summary: str,
    *,
    tag: str,
    ok: dict[str, dict[str, Any]],
    errors: tuple[int, ...] = (),
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    public: bool = False,
) -> Operation:
    """One operation: its success answers (`ok`: status -> response) and the error statuses it
    can give besides the ones every route can."""
    statuses = sorted({*_ALWAYS, *errors, *(() if public else _AUTH)})
    op: Operation = {
        "summary": summary,
        "tags": [tag],
        "responses": {**ok, **{str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}},
    }
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    if public:
        op["security"] = []
    return op


def _image_ok(description: str = "the image document") -> dict[str, dict[str, Any]]:
    return {"200": _json(description, _ref("Image"))}


_REDIRECT = {"302": {"description": "redirect to a presigned link valid for the configured TTL", "headers": {"Location": {"schema": {"type": "string"}}}}}
_MULTIPART = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "contentMediaType": "application/octet-stream", "description": "the image (JPEG, PNG, GIF, WebP, ...)"},
                    "json": {"type": "string", "description": "a JSON object of typed properties"},
                },
                "additionalProperties": {"type": "string", "description": "a string property"},
            }
        }
    },
}
_PROPERTIES_BODY = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}


def _collections_group() -> Group:
    tag = "collections"
    group: Group = {
        "/collections": {"get": operation("List collection names", tag=tag, ok={"200": _json("names", {"type": "array", "items": {"type": "string"}})}, errors=(503,))},
        "/collections/{collection}": {
            "get": operation("Collection statistics", tag=tag, ok={"200": _json("counts", {"type": "object"})}, errors=(404, 503), parameters=[COLLECTION]),
            "delete": operation("Delete a collection with its images", tag=tag, ok={"200": _json("what was deleted", {"type": "object"})}, errors=(404, 409, 503), parameters=[COLLECTION]),
        },
    }
    image_params = [COLLECTION, IMAGE_ID]
    # The original service answered under /images, /documents and /items alike.
    for noun in ("images", "documents", "items"):
        base = f"/collections/{{collection}}/{noun}"
        group[base] = {
            "get": operation(
                "List images, newest first", tag=tag, ok={"200": _json("one page of images", {"type": "array", "items": _ref("Image")})},
                errors=(404, 503), parameters=[COLLECTION, *LIST_PARAMS],
            ),
            "post": operation("Upload an image (multipart)", tag=tag, ok=_image_ok("the stored image"), errors=(409, 413, 415, 422, 503), parameters=[COLLECTION, _IDEMPOTENCY_KEY], body=_MULTIPART),
        }
        group[base + "/{image_id}"] = {
            "get": operation("One image's document", tag=tag, ok=_image_ok(), errors=(404, 503), parameters=image_params),
            "put": operation("Replace the properties", tag=tag, ok=_image_ok(), errors=(404, 409, 412, 413, 503), parameters=[*image_params, IF_MATCH], body=_PROPERTIES_BODY),
            "patch": operation("Merge-patch the properties (RFC 7386)", tag=tag, ok=_image_ok(), errors=(404, 409, 412, 413, 503), parameters=[*image_params, IF_MATCH], body=_PROPERTIES_BODY),
            "delete": operation("Delete an image", tag=tag, ok={"200": _json("the deleted image's id", {"type": "object"})}, errors=(404, 503), parameters=image_params),
        }
        group[base + "/{image_id}/info"] = {"get": operation("One image's document", tag=tag, ok=_image_ok(), errors=(404, 503), parameters=image_params)}
        for leaf in ("image", "file"):
            group[base + f"/{{image_id}}/{leaf}"] = {"get": operation("Download (redirect)", tag=tag, ok=_REDIRECT, errors=(404, 503), parameters=image_params)}
    return group


def _v1_group() -> Group:
    tag = "v1"
    page = {"type": "object", "properties": {"kind": {"type": "string"}, "next": {"type": ["string", "null"]}, "previous": {"type": ["string", "null"]}, "data": {"type": "array", "items": _ref("Image")}}}
    upload = {
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
    paging = [
        _query_param("offset", {"type": "integer", "minimum": 0, "maximum": 10_000_000}, "records to skip"),
        _query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size (default 50)"),
    ]
    group: Group = {}
    for slash in ("", "/"):
        group["/v1/images" + slash] = {
            "get": operation("List images (offset pages)", tag=tag, ok={"200": _json("one page", page)}, errors=(503,), parameters=paging),
            "post": operation("Upload an image (base64 JSON)", tag=tag, ok={"201": _json("the stored image", _ref("Image"))}, errors=(409, 413, 415, 422, 503), parameters=[_IDEMPOTENCY_KEY], body=upload),
        }
        group["/v1/images/{image_id}" + slash] = {
            "get": operation("One image's document", tag=tag, ok=_image_ok(), errors=(404, 503), parameters=[IMAGE_ID]),
            "delete": operation("Delete an image", tag=tag, ok={"200": _json("the deleted id", {"type": "object"})}, errors=(404, 503), parameters=[IMAGE_ID]),
        }
        group["/v1/images/{image_id}/image" + slash] = {"get": operation("Download (redirect)", tag=tag, ok=_REDIRECT, errors=(404, 503), parameters=[IMAGE_ID])}
    return group


def _objects_group() -> Group:
    params = [
        {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}, "description": "object key"},
        _query_param("expires", {"type": "string"}, "expiry, seconds since the epoch"),
        _query_param("signature", {"type": "string"}, "HMAC-SHA256 of method, path and query"),
        _query_param("filename", {"type": "string"}, "download file name"),
    ]
    ok = {"200": {"description": "the image bytes", "content": {"image/*": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}}}
    return {
        "/_objects/{key}": {
            "get": operation("A signed download link (filesystem backend; the signature is the credential)", tag="downloads", ok=ok, errors=(403, 404), parameters=params, public=True)
        }
    }


def _edge_group() -> Group:
    tag = "service"
    return {
        "/": {"get": operation("Service name, version and limits", tag=tag, ok={"200": _json("service information", {"type": "object"})}, public=True)},
        "/openapi.json": {"get": operation("This document", tag=tag, ok={"200": _json("OpenAPI 3.1", {"type": "object"})}, public=True)},
        "/docs": {"get": operation("A browsable page of this document", tag=tag, ok={"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}, public=True)},
    }


def _operations_group() -> Group:
    """Probes and metrics (public: orchestrators and Prometheus carry no user token) and the
    event feeds (authenticated like reads)."""
    tag = "operations"
    checks = {"type": "object", "description": "per store: backend, ok, ms, error"}
    ready_ok = {"200": _json("both stores answered", {"type": "object", "properties": {"status": {"const": "ready"}, "checks": checks}})}
    not_ready = {"503": _json("a store failed; `failed` names it", {"type": "object", "properties": {"failed": {"type": "array", "items": {"type": "string"}}, "checks": checks, "error": _ref("Error")}})}
    feed = {"101": {"description": "WebSocket: JSON messages `subscribed`, then `upload`, `update`, `delete` with `seq`, `collection`, `id`, `document`"}}
    return {
        "/health": {"get": operation("Liveness: the process serves", tag=tag, ok={"200": _json("alive", {"type": "object"})}, public=True)},
        "/ready": {"get": operation("Readiness: object store and database answer", tag=tag, ok={**ready_ok, **not_ready}, public=True)},
        "/metrics": {"get": operation("Prometheus metrics", tag=tag, ok={"200": {"description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}}, public=True)},
        "/events": {"get": operation("Live events of every collection (WebSocket)", tag=tag, ok=feed)},
        "/collections/{collection}/events": {"get": operation("Live events of one collection (WebSocket)", tag=tag, ok=feed, parameters=[COLLECTION])},
    }


def _datasets_group() -> Group:
    tag = "datasets"
    archive = {"description": "a zip streamed as it is made", "content": {"application/zip": {"schema": {"type": "string", "contentMediaType": "application/zip"}}}}
    body = {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["archive"],
                    "properties": {"archive": {"type": "string", "contentMediaType": "application/zip", "description": "our export, or the original service's (images + mongodb_data.json)"}},
                }
            }
        },
    }
    entry = {"type": "object", "properties": {"id": {"type": "string"}, "member": {"type": "string"}, "status": {"enum": ["skipped", "rejected"]}, "reason": {"type": "string"}}}
    summary = {
        "type": "object",
        "properties": {"collection": {"type": "string"}, "imported": {"type": "integer"}, "skipped": {"type": "integer"}, "rejected": {"type": "integer"}, "entries": {"type": "array", "items": entry}},
    }
    return {
        "/collections/{collection}/export": {
            "get": operation("Export the images, metadata.jsonl and mongodb_data.json as a zip", tag=tag, ok={"200": archive}, errors=(404, 503), parameters=[COLLECTION])
        },
        "/collections/{collection}/import": {
            "post": operation("Import a dataset zip; ids and times are kept, re-imports skip", tag=tag, ok={"200": _json("what was imported, skipped and rejected, with reasons", summary)}, errors=(409, 413, 415, 503), parameters=[COLLECTION], body=body)
        },
    }


_TUS_HEADER = {"name": "Tus-Resumable", "in": "header", "required": True, "schema": {"const": "1.0.0"}, "description": "the tus protocol version"}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "a repeat with the same key (same caller and collection, within 24 hours) answers what the first request answered, without storing again",
}  # fmt: skip


def _tus_group() -> Group:
    """tus 1.0.0 (https://tus.io/protocols/resumable-upload): OPTIONS advertises the version,
    extensions, Tus-Max-Size and Tus-Checksum-Algorithm; HEAD on an upload answers its
    Upload-Offset, Upload-Length and Upload-Expires."""
    tag = "tus"
    upload_id = _path_param("upload_id", "^[0-9a-f]{32}$", "upload id, from the creation's Location")
    offset_stream = {"required": True, "content": {"application/offset+octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}}
    creation_headers = [
        _TUS_HEADER,
        {"name": "Upload-Length", "in": "header", "required": True, "schema": {"type": "integer", "minimum": 1}, "description": "the whole upload's size"},
        {"name": "Upload-Metadata", "in": "header", "required": False, "schema": {"type": "string"}, "description": "`filename`, `content_type`, `properties` (base64 of a JSON object), each base64"},
        _IDEMPOTENCY_KEY,
    ]
    patch_headers = [
        _TUS_HEADER,
        {"name": "Upload-Offset", "in": "header", "required": True, "schema": {"type": "integer", "minimum": 0}, "description": "where this body starts; must equal the upload's offset"},
        {"name": "Upload-Checksum", "in": "header", "required": False, "schema": {"type": "string"}, "description": "`sha1 <base64>` or `sha256 <base64>` of this body"},
    ]
    created = {"201": {"description": "created; Location names the upload (with a body: Upload-Offset, and the image once complete)", "headers": {"Location": {"schema": {"type": "string"}}, "Upload-Expires": {"schema": {"type": "string"}}}}}
    appended = {
        "204": {"description": "stored; Upload-Offset is the new offset", "headers": {"Upload-Offset": {"schema": {"type": "integer"}}}},
        "200": _json("the last byte: the image, validated and recorded as an ordinary upload is", _ref("Image")),
    }
    group: Group = {}
    for base, params in (("/collections/{collection}/tus", [COLLECTION]), ("/v1/images/tus", [])):
        group[base] = {
            "post": operation("Create a resumable upload (tus creation, creation-with-upload)", tag=tag, ok=created, errors=(404, 409, 412, 413, 415, 422, 460, 503), parameters=[*params, *creation_headers]),
        }
        group[base + "/{upload_id}"] = {
            "patch": operation("Append to a resumable upload (tus core, checksum)", tag=tag, ok=appended, errors=(404, 408, 409, 412, 413, 415, 460, 503), parameters=[*params, upload_id, *patch_headers], body=offset_stream),
            "delete": operation("Terminate a resumable upload (tus termination)", tag=tag, ok={"204": {"description": "removed with its bytes"}}, errors=(404, 409, 412, 503), parameters=[*params, upload_id, _TUS_HEADER]),
        }
    return group


def _direct_group() -> Group:
    tag = "direct uploads"
    upload_id = _path_param("upload_id", "^[0-9a-f]{32}$", "the id the upload's start answered")
    start_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object", "required": ["size", "content_type"], "additionalProperties": False,
                    "properties": {
                        "filename": {"type": "string"}, "size": {"type": "integer", "minimum": 1},
                        "content_type": {"enum": ["image/jpeg", "image/png", "image/gif", "image/webp", "image/tiff", "image/bmp"]},
                        "properties": {"type": "object"},
                    },
                }
            }
        },
    }  # fmt: skip
    started = {
        "type": "object", "required": ["id", "method", "url", "fields", "expires_at", "complete_url"],
        "properties": {
            "id": {"type": "string"}, "method": {"const": "POST"}, "url": {"type": "string", "description": "where to POST the form"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"}, "description": "form fields to send before the file (field `file`)"},
            "expires_at": {"type": "string", "format": "date-time"}, "complete_url": {"type": "string", "description": "POST here once the file is sent"},
        },
    }  # fmt: skip
    form = {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {"file": {"type": "string", "contentMediaType": "application/octet-stream"}}, "additionalProperties": {"type": "string"}}}}}
    signed = [
        {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}, "description": "object key"},
        _query_param("max_bytes", {"type": "string"}, "the largest file accepted"),
        _query_param("expires", {"type": "string"}, "expiry, seconds since the epoch"),
        _query_param("signature", {"type": "string"}, "HMAC-SHA256 of method, path and query"),
    ]
    return {
        "/collections/{collection}/uploads": {
            "post": operation("Start a direct upload: a form to send the file straight to the object store", tag=tag, ok={"201": _json("the form", started)}, errors=(404, 409, 413, 415, 503), parameters=[COLLECTION], body=start_body),
        },
        "/collections/{collection}/uploads/{upload_id}/complete": {
            "post": operation("Complete a direct upload: the stored file is validated and recorded", tag=tag, ok=_image_ok("the stored image"), errors=(404, 409, 413, 415, 422, 503), parameters=[COLLECTION, upload_id, _IDEMPOTENCY_KEY]),
        },
        "/_uploads/{key}": {
            "post": operation("A signed upload form (filesystem backend; the signature is the credential)", tag=tag, ok={"204": {"description": "stored"}}, errors=(403, 409, 413, 415), parameters=signed, body=form, public=True),
        },
    }


# Add a group here for every module that registers routes.
GROUPS: list[Group] = [_edge_group(), _collections_group(), _v1_group(), _objects_group(), _operations_group(), _datasets_group(), _tus_group(), _direct_group()]


def described() -> dict[str, dict[str, Operation]]:
    """Every documented path -> method -> operation, across the groups."""
    paths: dict[str, dict[str, Operation]] = {}
    for group in GROUPS:
        for path, methods in group.items():
            paths.setdefault(path, {}).update(methods)
    return paths


def registered(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves, HEAD and preflights aside."""
    routes = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*") or route.resource is None:
            continue
        routes.add((route.method.lower(), route.resource.canonical))
    return routes


def public_routes() -> set[tuple[str, str]]:
    return {(m, p) for p, methods in described().items() for m, op in methods.items() if op.get("security") == []}


def document(app: web.Application) -> dict[str, Any]:
    served = registered(app)
    paths: dict[str, dict[str, Operation]] = {}
    for path, methods in described().items():
        kept = {m: op for m, op in methods.items() if (m, path) in served}
        if kept:
            paths[path] = kept
    return {
        "openapi": "3.1.0",
        "info": {"title": "image-gateway", "version": __version__, "description": "Images in an object store, metadata in a database, downloads through presigned links."},
        "paths": paths,
        "security": [{"bearer": []}, {"apiKey": []}, {"cookie": []}],
        "components": {
            "schemas": {"Error": _ERROR_SCHEMA, "Image": _IMAGE_SCHEMA},
            "responses": {f"E{s}": _json(text, _ref("Error")) for s, text in ERROR_STATUSES.items()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "forwarded to the identification URL, or an OIDC JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "jwt"},
            },
        },
    }


_DOCS_SCRIPT = """
fetch("openapi.json").then(r => r.json()).then(doc => {
  const main = document.querySelector("main");
  const text = (tag, value, cls) => { const e = document.createElement(tag); e.textContent = value; if (cls) e.className = cls; return e; };
  main.append(text("h1", doc.info.title + " " + doc.info.version), text("p", doc.info.description));
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.append(text("b", method.toUpperCase() + " ", method), text("code", path), text("span", " " + op.summary));
      details.append(summary);
      for (const p of op.parameters || []) details.append(text("div", p.in + " " + p.name + ": " + (p.description || "")));
      details.append(text("div", "answers: " + Object.keys(op.responses).join(", ") + (op.security ? " (no credentials needed)" : "")));
      main.append(details);
    }
  }
});
""".strip()
_DOCS_STYLE = "body{font-family:sans-serif;margin:2em}details{margin:.3em 0}code{margin:0 .5em}.get{color:#060}.delete{color:#a00}.post,.put,.patch{color:#036}"


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


_DOCS_PAGE = (
    f'<!doctype html><html><head><meta charset="utf-8"><title>image-gateway API</title><style>{_DOCS_STYLE}</style></head>'
    f"<body><main></main><noscript>The API is described at <a href=\"openapi.json\">openapi.json</a>.</noscript>"
    f"<script>{_DOCS_SCRIPT}</script></body></html>"
)
# The page's own script and style, by hash; nothing else may run or load but the document.
DOCS_CSP = f"default-src 'none'; script-src {_sha256(_DOCS_SCRIPT)}; style-src {_sha256(_DOCS_STYLE)}; connect-src 'self'; frame-ancestors 'none'"


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document(request.app), dumps=lambda value: json.dumps(value, separators=(",", ":")))


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=_DOCS_PAGE, content_type="text/html", headers={"Content-Security-Policy": DOCS_CSP})


def routes() -> list[web.RouteDef]:
    return [web.get("/openapi.json", openapi_json), web.get("/docs", docs)]
