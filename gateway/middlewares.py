"""Every middleware, outermost first: metrics, request context (request id, in-flight registry,
access log), the edge (security headers, CORS), and the one mapping of errors to HTTP answers.
Authentication, the innermost, lives with the rest of auth."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypedDict

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.errors import CLIENT_CLOSED_REQUEST, GatewayError
from gateway.keys import CONFIG, IN_FLIGHT, REQUEST_ID, USER_ID
from gateway.metrics import Metrics
from gateway.jsoncodec import json_response

log = logging.getLogger("gateway")
access_log = logging.getLogger("gateway.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}

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
class ParserLimits(TypedDict):
    max_line_size: int
    max_field_size: int
    max_headers: int


HTTP_PARSER_LIMITS: ParserLimits = {"max_line_size": 8190, "max_field_size": 8190, "max_headers": 100}
# tus clients in browsers send and read the protocol's own headers, and probe with OPTIONS.
_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
_REQUEST_HEADERS = (
    "Authorization, Content-Type, If-Match, X-API-Key, X-Request-ID, Idempotency-Key, "
    "Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, Upload-Checksum, Upload-Defer-Length, Upload-Concat"
)
# A preflight's `Access-Control-Request-Headers`: comma-separated header names (RFC 9110 tokens).
_HEADER_NAMES = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:[ \t]*,[ \t]*[!#$%&'*+.^_`|~0-9A-Za-z-]+){0,63}")
_EXPOSED = (
    "Content-Disposition, ETag, Link, Location, X-Request-ID, X-Total-Count, "
    "Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Upload-Offset, Upload-Length, Upload-Expires"
)


class Outcome:
    """What a request ended as, seen from the outside, shared by the access log and the metrics:
    the answer's status (500 until the handler says otherwise) and the response, if any."""

    def __init__(self) -> None:
        self.status = 500
        self.response: web.StreamResponse | None = None

    async def run(self, handler: Handler, request: web.Request) -> web.StreamResponse:
        try:
            self.response = await handler(request)
            self.status = self.response.status
            return self.response
        except web.HTTPException as exc:
            self.status = exc.status
            raise
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client goes away mid-request: not our failure.
            self.status = CLIENT_CLOSED_REQUEST
            raise


def route_template(request: web.Request) -> str:
    """The matched route's template: logs and metrics never carry a raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def measure(metrics: Metrics) -> Any:
    """Counts and times each request by route template, as the client gets the answer."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        metrics.in_progress.inc()
        if request.content_length:
            metrics.bytes_received.inc(request.content_length)
        outcome = Outcome()
        try:
            response = await outcome.run(handler, request)
            # aiohttp sends the body after the middlewares return, within this request's own
            # task; its length (a FileResponse's too) is final when that task ends.
            task = asyncio.current_task()
            if task is not None:
                task.add_done_callback(lambda _: metrics.bytes_served.inc(response.body_length))
            return response
        finally:
            metrics.in_progress.dec()
            metrics.answered(request.method, route_template(request), outcome.status, time.perf_counter() - started)

    return record


def _is_feed(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Request-ID", "")
    # 128 random bits for correlation, not secrecy: `random` (reseeded in every forked worker)
    # costs a fraction of uuid4's system call per request.
    request_id = given if given and _REQUEST_ID.fullmatch(given) else f"{random.getrandbits(128):032x}"
    request[REQUEST_ID] = request_id
    task = asyncio.current_task()
    # Graceful shutdown waits for these. A WebSocket feed is not among them: it would never end
    # on its own, and shutdown closes it instead (on_shutdown).
    in_flight = request.app[IN_FLIGHT]
    if task is not None and not _is_feed(request):
        in_flight.add(task)
    started = time.perf_counter()
    outcome = Outcome()
    try:
        answer = await outcome.run(handler, request)
        answer.headers["X-Request-ID"] = request_id
        return answer
    finally:
        if task is not None:
            in_flight.discard(task)
        # Checked first: with access logs off (LOG_LEVEL warning) a request builds no log fields.
        if access_log.isEnabledFor(logging.INFO):
            status, response = outcome.status, outcome.response
            fields = {"method": request.method, "route": route_template(request), "status": status, "request_id": request_id}
            if response is not None and task is not None:
                # aiohttp sends the body after the middlewares return, in this request's task: log
                # once it is out, with its length and the time it took.
                task.add_done_callback(lambda _: _log_access(request, fields, started, response))
            else:
                _log_access(request, fields, started, None)


def _log_access(request: web.Request, fields: dict[str, object], started: float, response: web.StreamResponse | None) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    sent = response.body_length if response is not None else 0
    user = request.get(USER_ID)
    access_log.info(
        "%s %s %s %d %.1fms %dB%s",
        fields["method"], fields["route"], fields["request_id"], fields["status"], duration_ms, sent, f" user={user}" if user else "",
        extra={**fields, "duration_ms": duration_ms, "bytes": sent, "user": user},
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


def _allowed_request_headers(request: web.Request) -> str:
    """The headers a preflight may announce: whichever it asks for, as the original's Express
    `cors()` answered (front-ends add their own, e.g. `Cache-Control`). No answer allows
    credentials, so a preflighted request never carries the browser's cookies or HTTP
    authentication: a header lets a page send only what any other client could."""
    asked = request.headers.get("Access-Control-Request-Headers", "").strip()
    if asked and _HEADER_NAMES.fullmatch(asked):
        return asked
    return _REQUEST_HEADERS


def _decorate(headers: MutableMapping[str, str], request: web.Request, origin: str | None) -> None:
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    allowed = request.app[CONFIG].cors.allowed_origins
    if allowed and "*" not in allowed:
        # The answer names the caller's origin, so caches must keep one copy per origin (besides
        # whatever else it varies by: `Accept` for renditions, the asked headers for preflights).
        vary = headers.get("Vary")
        headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
    if origin is not None:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = _EXPOSED


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Headers every answer carries (no sniffing, no framing, no referrer) and CORS, off by default."""
    origin = _allowed_origin(request)
    if request.method == "OPTIONS" and origin is not None and "Access-Control-Request-Method" in request.headers:
        preflight = web.Response(status=204)
        preflight.headers.update(
            {
                "Access-Control-Allow-Methods": _METHODS,
                "Access-Control-Allow-Headers": _allowed_request_headers(request),
                "Access-Control-Max-Age": str(request.app[CONFIG].cors.max_age_seconds),
                "Vary": "Access-Control-Request-Headers",
            }
        )
        _decorate(preflight.headers, request, origin)
        return preflight
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        # Redirects travel as exceptions; they get the same headers.
        _decorate(exc.headers, request, origin)
        raise
    if not response.prepared:
        _decorate(response.headers, request, origin)
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        if exc.status >= 500:
            log.warning("%s %s: %s (%s)", request.method, request.path, exc.message, request.get(REQUEST_ID))
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason, headers)
    except (ConnectionResetError, HttpProcessingError) as exc:
        # The client broke the body off or sent a malformed one; nobody may be listening.
        return error_response(400, "incomplete_body", f"the request body could not be read ({exc.__class__.__name__})")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error in %s %s (request %s)", request.method, request.path, request.get(REQUEST_ID))
        return error_response(500, "internal_error", f"internal error; request id {request.get(REQUEST_ID)}")
