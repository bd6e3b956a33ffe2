"""The request pipeline: one middleware around every handler, doing in order (outermost first)
what each request needs: metrics, its context (request id, in-flight registry, access log), the
edge (security headers, CORS), the one mapping of errors to HTTP answers, and authentication
(which lives with the rest of auth, in `gateway.auth.middleware`, and is handed in).

Each concern is a plain function or a small class here; the pipeline only calls them in order.
One coroutine per request instead of one per concern: a middleware layer costs aiohttp a
`partial`, a wrapper and a coroutine frame per request, about as much as a bare handler's answer."""

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
from multidict import CIMultiDict

from gateway.config import Config, CorsConfig
from gateway.errors import CLIENT_CLOSED_REQUEST, GatewayError
from gateway.keys import REQUEST_ID, USER_ID
from gateway.metrics import Metrics
from gateway.jsoncodec import json_response

log = logging.getLogger("gateway")
access_log = logging.getLogger("gateway.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# What the pipeline asks authentication before the handler runs: None to go on at once (no
# credentials needed here), else an awaitable that admits the request or raises.
Admission = Callable[[web.Request, bool], Awaitable[None] | None]
# multidict 6.5 and later merge a set of headers in one call.
_MERGE = hasattr(CIMultiDict, "merge")
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


def route_template(request: web.Request) -> str:
    """The matched route's template: logs and metrics never carry a raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def is_feed(request: web.Request) -> bool:
    """Whether the request asks to become a WebSocket (an event feed)."""
    return request.headers.get("Upgrade", "").lower() == "websocket"


# --- request context ---------------------------------------------------------------------------


def request_id(request: web.Request) -> str:
    """The caller's `X-Request-ID` when it is a sane token, else a new one."""
    given = request.headers.get("X-Request-ID", "")
    # 128 random bits for correlation, not secrecy: `random` (reseeded in every forked worker)
    # costs a fraction of uuid4's system call per request.
    return given if given and _REQUEST_ID.fullmatch(given) else f"{random.getrandbits(128):032x}"


def _log_access(request: web.Request, fields: dict[str, object], started: float, response: web.StreamResponse | None) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    sent = response.body_length if response is not None else 0
    user = request.get(USER_ID)
    access_log.info(
        "%s %s %s %d %.1fms %dB%s",
        fields["method"], fields["route"], fields["request_id"], fields["status"], duration_ms, sent, f" user={user}" if user else "",
        extra={**fields, "duration_ms": duration_ms, "bytes": sent, "user": user},
    )


class _Sent:
    """What happens once an answer's body is out: aiohttp sends it after the middleware returns,
    within the request's own task, so its length (a FileResponse's too) is final when that task
    ends. One callback per request does both: count the bytes, and log the request when access
    logs are on."""

    __slots__ = ("metrics", "request", "response", "started", "fields")

    def __init__(self, metrics: Metrics, request: web.Request, response: web.StreamResponse, started: float, fields: dict[str, object] | None):
        self.metrics, self.request, self.response, self.started, self.fields = metrics, request, response, started, fields

    def __call__(self, _: object) -> None:
        self.metrics.bytes_served.inc(self.response.body_length)
        if self.fields is not None:
            _log_access(self.request, self.fields, self.started, self.response)


# --- the edge ----------------------------------------------------------------------------------


class Edge:
    """Headers every answer carries (no sniffing, no framing, no referrer) and CORS, off by
    default; all read from the config once."""

    def __init__(self, cors: CorsConfig):
        self._allowed = frozenset(cors.allowed_origins)
        self._any_origin = "*" in self._allowed
        # The answer names the caller's origin, so caches must keep one copy per origin (besides
        # whatever else it varies by: `Accept` for renditions, the asked headers for preflights).
        self._vary_by_origin = bool(self._allowed) and not self._any_origin
        self._max_age = str(cors.max_age_seconds)
        self._security = CIMultiDict(SECURITY_HEADERS)

    def origin(self, request: web.Request) -> str | None:
        """The Access-Control-Allow-Origin value for this request, or None (CORS off, no
        Origin, or an origin not on the list)."""
        if not self._allowed:
            return None
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        if self._any_origin:
            return "*"
        return origin if origin in self._allowed else None

    def preflight(self, request: web.Request, origin: str) -> web.Response | None:
        """The answer to a CORS preflight, or None when the request is none."""
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        preflight = web.Response(status=204)
        preflight.headers.update(
            {
                "Access-Control-Allow-Methods": _METHODS,
                "Access-Control-Allow-Headers": _allowed_request_headers(request),
                "Access-Control-Max-Age": self._max_age,
                "Vary": "Access-Control-Request-Headers",
            }
        )
        self.decorate(preflight.headers, origin)
        return preflight

    def decorate(self, headers: MutableMapping[str, str], origin: str | None) -> None:
        if _MERGE and isinstance(headers, CIMultiDict):
            headers.merge(self._security)  # each one the answer does not set itself, in one call
        else:
            for name, value in SECURITY_HEADERS.items():
                headers.setdefault(name, value)
        if self._vary_by_origin:
            vary = headers.get("Vary")
            headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
        if origin is not None:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Expose-Headers"] = _EXPOSED


def _allowed_request_headers(request: web.Request) -> str:
    """The headers a preflight may announce: whichever it asks for, as the original's Express
    `cors()` answered (front-ends add their own, e.g. `Cache-Control`). No answer allows
    credentials, so a preflighted request never carries the browser's cookies or HTTP
    authentication: a header lets a page send only what any other client could."""
    asked = request.headers.get("Access-Control-Request-Headers", "").strip()
    if asked and _HEADER_NAMES.fullmatch(asked):
        return asked
    return _REQUEST_HEADERS


# --- errors ------------------------------------------------------------------------------------


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def error_answer(request: web.Request, exc: Exception) -> web.Response | None:
    """The one mapping of errors to HTTP answers: the JSON error for `exc`, or None for an
    HTTP exception below 400 (a redirect raised by aiohttp), which travels on as it is."""
    if isinstance(exc, GatewayError):
        if exc.status >= 500:
            log.warning("%s %s: %s (%s)", request.method, request.path, exc.message, request.get(REQUEST_ID))
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return None
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason, headers)
    if isinstance(exc, (ConnectionResetError, HttpProcessingError)):
        # The client broke the body off or sent a malformed one; nobody may be listening.
        return error_response(400, "incomplete_body", f"the request body could not be read ({exc.__class__.__name__})")
    log.error("unhandled error in %s %s (request %s)", request.method, request.path, request.get(REQUEST_ID), exc_info=exc)
    return error_response(500, "internal_error", f"internal error; request id {request.get(REQUEST_ID)}")


# --- the pipeline ------------------------------------------------------------------------------


def pipeline(config: Config, metrics: Metrics, in_flight: set[asyncio.Task[Any]], admission: Admission | None) -> Any:
    """The one middleware. `in_flight` holds the tasks answering requests (graceful shutdown
    waits for them); `admission` is authentication's check, None when authentication is off."""
    edge = Edge(config.cors)
    answered, in_progress, bytes_received = metrics.answered, metrics.in_progress, metrics.bytes_received
    perf_counter, current_task = time.perf_counter, asyncio.current_task

    @web.middleware
    async def answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Metrics time and count the whole answer as the client gets it.
        started = perf_counter()
        in_progress.inc()
        if request.content_length:
            bytes_received.inc(request.content_length)
        request[REQUEST_ID] = rid = request_id(request)
        task = current_task()
        feed = is_feed(request)
        # Graceful shutdown waits for these. A WebSocket feed is not among them: it would never
        # end on its own, and shutdown closes it instead (on_shutdown).
        if task is not None and not feed:
            in_flight.add(task)
        # What the request ended as, seen from the outside (the access log's and the metrics'):
        # 500 until an answer says otherwise.
        status = 500
        response: web.StreamResponse | None = None
        try:
            origin = edge.origin(request)
            preflight = edge.preflight(request, origin) if origin is not None else None
            if preflight is not None:
                response = preflight
            else:
                try:
                    if admission is not None and (admitting := admission(request, feed)) is not None:
                        await admitting
                    response = await handler(request)
                except Exception as exc:
                    response = error_answer(request, exc)
                    if response is None:
                        # Redirects raised as exceptions get the same headers, and go on.
                        assert isinstance(exc, web.HTTPException)
                        edge.decorate(exc.headers, origin)
                        raise
                if not response.prepared:
                    edge.decorate(response.headers, origin)
            status = response.status
            response.headers["X-Request-ID"] = rid
            return response
        except web.HTTPException as exc:
            status = exc.status
            response = None
            raise
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client goes away mid-request: not our failure.
            status = CLIENT_CLOSED_REQUEST
            response = None
            raise
        finally:
            if task is not None:
                in_flight.discard(task)
            in_progress.dec()
            answered(request.method, route_template(request), status, perf_counter() - started)
            # Checked first: with access logs off (LOG_LEVEL warning) a request builds no log fields.
            fields = None
            if access_log.isEnabledFor(logging.INFO):
                fields = {"method": request.method, "route": route_template(request), "status": status, "request_id": rid}
            if response is not None and task is not None:
                task.add_done_callback(_Sent(metrics, request, response, started, fields))
            elif fields is not None:
                _log_access(request, fields, started, None)

    return answer
