"""The request pipeline (gateway.middlewares.pipeline) on a small app of its own: what each
concern does to answers that the gateway's routes rarely give (a redirect raised as an
exception, an unhandled error, a 5xx from the error tree, a handler cancelled)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.errors import Unavailable
from gateway.keys import REQUEST_ID
from gateway.metrics import Metrics
from gateway.middlewares import SECURITY_HEADERS, pipeline
from tests.helpers import make_config


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def _client(aiohttp_client: Any, tmp_path: Path, admission: Any = None, **cors: Any) -> tuple[Any, Metrics, set[Any]]:
    config = make_config(tmp_path, {"cors": cors} if cors else {})
    metrics, in_flight = Metrics(), set()
    seen: dict[str, Any] = {}

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    async def broken(request: web.Request) -> web.Response:
        seen["request_id"] = request[REQUEST_ID]
        raise RuntimeError("a bug")

    async def unavailable(request: web.Request) -> web.Response:
        raise Unavailable("the store is away", code="store_unavailable")

    async def busy(request: web.Request) -> web.Response:
        seen["in_flight"] = len(in_flight)
        return web.Response(text="ok", headers={"X-Frame-Options": "SAMEORIGIN"})

    app = web.Application(middlewares=[pipeline(config, metrics, in_flight, admission)])
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/broken", broken)
    app.router.add_get("/unavailable", unavailable)
    app.router.add_get("/busy", busy)
    client = await aiohttp_client(app)
    client.seen = seen
    return client, metrics, in_flight


async def test_a_raised_redirect_travels_on_with_the_edge_headers(aiohttp_client: Any, tmp_path: Path) -> None:
    client, metrics, _ = await _client(aiohttp_client, tmp_path)
    response = await client.get("/redirect", allow_redirects=False, headers={"Origin": "https://a.example"})
    assert response.status == 302 and response.headers["Location"] == "/elsewhere"
    assert all(response.headers[name] == value for name, value in SECURITY_HEADERS.items())
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert _value(metrics, "gateway_http_requests_total", method="GET", route="/redirect", status="302") == 1


async def test_an_unhandled_error_is_a_json_500_naming_the_request(aiohttp_client: Any, tmp_path: Path) -> None:
    client, metrics, in_flight = await _client(aiohttp_client, tmp_path)
    response = await client.get("/broken", headers={"X-Request-ID": "trace-7"})
    assert response.status == 500
    body = await response.json()
    assert body["error"]["code"] == "internal_error" and "trace-7" in body["error"]["message"]
    assert client.seen["request_id"] == response.headers["X-Request-ID"] == "trace-7"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert _value(metrics, "gateway_http_requests_total", method="GET", route="/broken", status="500") == 1
    assert in_flight == set() and _value(metrics, "gateway_http_requests_in_progress") == 0


async def test_errors_of_the_tree_keep_their_status_and_code(aiohttp_client: Any, tmp_path: Path) -> None:
    client, metrics, _ = await _client(aiohttp_client, tmp_path)
    response = await client.get("/unavailable")
    assert response.status == 503 and (await response.json())["error"]["code"] == "store_unavailable"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    missing = await client.get("/nowhere")
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    assert _value(metrics, "gateway_http_requests_total", method="GET", route="unmatched", status="404") == 1


async def test_an_answer_keeps_the_headers_it_sets_and_is_counted_once_sent(aiohttp_client: Any, tmp_path: Path) -> None:
    client, metrics, in_flight = await _client(aiohttp_client, tmp_path)
    response = await client.get("/busy")
    assert await response.text() == "ok"
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN" and response.headers["Referrer-Policy"] == "no-referrer"
    assert client.seen["in_flight"] == 1 and in_flight == set()
    # What was written (the head and the body) is counted when the request's task ends.
    for _ in range(100):
        if _value(metrics, "gateway_http_served_bytes_total") > 0:
            break
        await asyncio.sleep(0.01)
    assert _value(metrics, "gateway_http_served_bytes_total") > len("ok")


async def test_a_listed_origin_varies_answers_by_origin(aiohttp_client: Any, tmp_path: Path) -> None:
    client, _, _ = await _client(aiohttp_client, tmp_path, allowed_origins=["https://app.example"])
    listed = await client.get("/busy", headers={"Origin": "https://app.example"})
    assert listed.headers["Access-Control-Allow-Origin"] == "https://app.example" and listed.headers["Vary"] == "Origin"
    other = await client.get("/busy", headers={"Origin": "https://other.example"})
    assert "Access-Control-Allow-Origin" not in other.headers and other.headers["Vary"] == "Origin"
    preflight = await client.options("/busy", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
    assert preflight.status == 204 and preflight.headers["Vary"] == "Access-Control-Request-Headers, Origin"
    assert preflight.headers["X-Request-ID"] and preflight.headers["X-Content-Type-Options"] == "nosniff"


async def test_admission_runs_before_the_handler_and_its_refusal_is_an_answer(aiohttp_client: Any, tmp_path: Path) -> None:
    from gateway.errors import Unauthorized

    calls: list[tuple[str, bool]] = []

    async def refuse() -> None:
        raise Unauthorized("credentials are required", code="unauthenticated")

    def admission(request: web.Request, upgrade: bool) -> Any:
        calls.append((request.path, upgrade))
        return refuse() if request.path == "/busy" else None

    client, metrics, _ = await _client(aiohttp_client, tmp_path, admission)
    refused = await client.get("/busy", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert refused.status == 401 and (await refused.json())["error"]["code"] == "unauthenticated"
    assert "in_flight" not in client.seen
    assert (await client.get("/unavailable")).status == 503
    assert calls == [("/busy", True), ("/unavailable", False)]
