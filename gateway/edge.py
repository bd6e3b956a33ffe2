"""Headers every answer carries (no sniffing, no framing, no referrer) and CORS, off by default."""

from __future__ import annotations

from aiohttp import web

from gateway.keys import CONFIG
from gateway.middlewares import Handler

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # JSON answers load nothing; pages and files that need more set their own policy.
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
# The HTTP parser's limits, stated rather than inherited: a request line (method, path, query)
# and each header field of at most 8 KiB, and at most 100 header fields. Past them aiohttp
# answers 400 before any route or middleware runs. Bodies and form fields are bounded by
# `limits` in the config, while they stream.
HTTP_PARSER_LIMITS = {"max_line_size": 8190, "max_field_size": 8190, "max_headers": 100}
_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
_REQUEST_HEADERS = (
    "Authorization, Content-Type, If-Match, X-API-Key, X-Request-ID, Idempotency-Key, "
    "Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, Upload-Checksum, Upload-Defer-Length, Upload-Concat"
)
_EXPOSED = (
    "ETag, Link, Location, X-Request-ID, X-Total-Count, "
    "Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Upload-Offset, Upload-Length, Upload-Expires"
)


def _allowed_origin(request: web.Request) -> str | None:
    """The Access-Control-Allow-Origin value for this request, or None (CORS off, no Origin, or
    an origin not on the list)."""
    allowed = request.app[CONFIG].cors.allowed_origins
    origin = request.headers.get("Origin")
    if not allowed or origin is None:
        return None
    if "*" in allowed:
        return "*"
    return origin if origin in allowed else None


def _decorate(headers: object, request: web.Request, origin: str | None) -> None:
    assert hasattr(headers, "setdefault")
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    if request.app[CONFIG].cors.allowed_origins:
        headers.setdefault("Vary", "Origin")
    if origin is not None:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = _EXPOSED


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = _allowed_origin(request)
    if request.method == "OPTIONS" and origin is not None and "Access-Control-Request-Method" in request.headers:
        response = web.Response(status=204)
        response.headers.update(
            {
                "Access-Control-Allow-Methods": _METHODS,
                "Access-Control-Allow-Headers": _REQUEST_HEADERS,
                "Access-Control-Max-Age": str(request.app[CONFIG].cors.max_age_seconds),
            }
        )
        _decorate(response.headers, request, origin)
        return response
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        # Redirects travel as exceptions; they get the same headers.
        _decorate(exc.headers, request, origin)
        raise
    if not response.prepared:
        _decorate(response.headers, request, origin)
    return response
