"""Request context (request id, access log) and the one mapping of errors to HTTP answers."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.errors import GatewayError
from gateway.keys import REQUEST_ID, USER_ID
from gateway.outcome import Outcome

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


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Request-ID", "")
    request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    outcome = Outcome()
    try:
        response = await outcome.run(handler, request)
        response.headers["X-Request-ID"] = request_id
        return response
    finally:
        status, response = outcome.status, outcome.response
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        fields = {"method": request.method, "route": route, "status": status, "request_id": request_id}
        task = asyncio.current_task()
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
