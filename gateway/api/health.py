"""Liveness and readiness for orchestrators and load balancers.

`/health` says the process serves; `/ready` says it can do its job: the object store (head bucket)
and the metadata store (ping) both answer within `READY_TIMEOUT_SECONDS`. A failing check gives
503 naming the store, so a balancer stops sending traffic here while the store is away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.api.openapi import json_answer, operation, ref
from gateway.errors import GatewayError
from gateway.keys import BLOBS, METADATA
from gateway.jsoncodec import json_response

READY_TIMEOUT_SECONDS = 2.0
# Probes and metrics are public: orchestrators and Prometheus carry no user token.
TAG = "operations"
_CHECKS = {"type": "object", "description": "per store: backend, ok, ms, error"}
_READY = {"200": json_answer("both stores answered", {"type": "object", "properties": {"status": {"const": "ready"}, "checks": _CHECKS}})}
_NOT_READY = {
    "503": json_answer("a store failed; `failed` names it", {"type": "object", "properties": {"failed": {"type": "array", "items": {"type": "string"}}, "checks": _CHECKS, "error": ref("Error")}})
}
METRICS_OPERATION = operation("Prometheus metrics", tag=TAG, ok={"200": {"description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}}, public=True)


@operation("Liveness: the process serves", tag=TAG, ok={"200": json_answer("alive", {"type": "object"})}, public=True)
async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def _check(ping: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(ping(), READY_TIMEOUT_SECONDS)
        result: dict[str, Any] = {"ok": True}
    except TimeoutError:
        result = {"ok": False, "error": f"no answer within {READY_TIMEOUT_SECONDS:g}s"}
    except GatewayError as exc:
        result = {"ok": False, "error": exc.message}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


@operation("Readiness: object store and database answer", tag=TAG, ok={**_READY, **_NOT_READY}, public=True)
async def ready(request: web.Request) -> web.Response:
    blobs, metadata = request.app[BLOBS], request.app[METADATA]
    object_store, database = await asyncio.gather(_check(blobs.ping), _check(metadata.ping))
    checks = {"object_store": {"backend": blobs.name, **object_store}, "metadata": {"backend": metadata.name, **database}}
    failed = [name for name, check in checks.items() if not check["ok"]]
    headers = {"Cache-Control": "no-store"}
    if not failed:
        return json_response({"status": "ready", "checks": checks}, headers=headers)
    message = "not ready: " + "; ".join(f"{name} ({checks[name]['error']})" for name in failed)
    body = {"status": "unavailable", "failed": failed, "checks": checks, "error": {"code": "not_ready", "message": message}}
    return json_response(body, status=503, headers=headers)
