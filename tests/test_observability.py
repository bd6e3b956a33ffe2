"""Health, readiness, metrics, access logs and live events, over the embedded backends and over
MinIO+FerretDB (where events fall back to polling: FerretDB has no change streams)."""

from __future__ import annotations

import asyncio
import time
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.errors import Unavailable
from gateway.keys import BLOBS, EVENTS, METADATA, SERVICE
from gateway.cli.logs import JsonFormatter, configure
from tests.api.test_collections import upload
from tests.helpers import make_config, png

def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


async def metrics_text(client: TestClient) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return await response.text()


# --- health and readiness --------------------------------------------------------------------


async def test_health_and_ready_when_both_stores_answer(client: TestClient) -> None:
    assert (await client.get("/health")).status == 200
    response = await client.get("/ready")
    body = await response.json()
    assert response.status == 200, body
    assert body["status"] == "ready"
    assert body["checks"]["object_store"]["ok"] and body["checks"]["metadata"]["ok"]


@pytest.mark.embedded
@pytest.mark.parametrize("failing", ["object_store", "metadata"])
async def test_ready_is_503_naming_the_failed_store(make_client: Any, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    client = await make_client()
    store = client.app[BLOBS if failing == "object_store" else METADATA].wrapped

    async def down() -> None:
        raise Unavailable("injected outage")

    monkeypatch.setattr(store, "ping", down)
    response = await client.get("/ready")
    body = await response.json()
    assert response.status == 503
    assert body["failed"] == [failing]
    assert body["error"]["code"] == "not_ready" and failing in body["error"]["message"]
    assert (await client.get("/health")).status == 200


@pytest.mark.embedded
async def test_ready_times_out_a_store_that_hangs(make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.api import health

    client = await make_client()
    monkeypatch.setattr(health, "READY_TIMEOUT_SECONDS", 0.05)

    async def hang() -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(client.app[METADATA].wrapped, "ping", hang)
    body = await (await client.get("/ready")).json()
    assert body["failed"] == ["metadata"] and "no answer" in body["checks"]["metadata"]["error"]


# --- metrics -----------------------------------------------------------------------------------


async def test_metrics_count_real_requests(client: TestClient) -> None:
    image = png((20, 10))
    doc = await upload(client, "metered", image)
    await client.get(f"/collections/metered/images/{doc['id']}")
    await client.get("/collections/metered/images/0123456789abcdef01234567")
    await client.get(f"/collections/metered/images/{doc['id']}/image", allow_redirects=False)
    await client.delete(f"/collections/metered/images/{doc['id']}")
    text = await metrics_text(client)
    item = "/collections/{collection}/images/{image_id}"
    assert value(text, "gateway_http_requests_total", method="POST", route="/collections/{collection}/images", status="200") == 1
    assert value(text, "gateway_http_requests_total", method="GET", route=item, status="200") == 1
    assert value(text, "gateway_http_requests_total", method="GET", route=item, status="404") == 1
    assert value(text, "gateway_http_requests_total", method="GET", route=item + "/image", status="302") == 1
    assert value(text, "gateway_http_request_duration_seconds_count", method="GET", route=item) == 2
    assert value(text, "gateway_images_stored_total", collection="metered") == 1
    assert value(text, "gateway_images_deleted_total", collection="metered") == 1
    assert value(text, "gateway_uploaded_bytes_total") == len(image)
    assert value(text, "gateway_http_received_bytes_total") > len(image)
    assert value(text, "gateway_http_served_bytes_total") > 0
    assert value(text, "gateway_dependency_duration_seconds_count", dependency="object_store", operation="put") == 1
    assert value(text, "gateway_dependency_duration_seconds_count", dependency="database", operation="insert") == 1
    # A missing image is the caller's answer, not a database failure.
    assert value(text, "gateway_dependency_errors_total", dependency="database", operation="get") == 0
    # Raw paths never become labels.
    assert doc["id"] not in text


@pytest.mark.embedded
async def test_metrics_count_store_failures_and_served_file_bytes(make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = await make_client()
    image = png((30, 30))
    doc = await upload(client, "files", image)
    response = await client.get(f"/collections/files/images/{doc['id']}/image")
    assert await response.read() == image
    store = client.app[METADATA].wrapped

    async def down(*args: Any) -> None:
        raise Unavailable("injected outage")

    monkeypatch.setattr(store, "get", down)
    assert (await client.get(f"/collections/files/images/{doc['id']}")).status == 503
    text = await metrics_text(client)
    assert value(text, "gateway_dependency_errors_total", dependency="database", operation="get") == 1
    assert value(text, "gateway_http_requests_total", method="GET", route="/collections/{collection}/images/{image_id}", status="503") == 1
    # The filesystem backend serves the bytes itself; they count once the body is out.
    assert value(text, "gateway_http_served_bytes_total") >= len(image)


@pytest.mark.embedded
async def test_each_app_has_its_own_registry(make_client: Any) -> None:
    first, second = await make_client(), await make_client()
    await upload(first, "one")
    assert value(await metrics_text(first), "gateway_images_stored_total", collection="one") == 1
    assert value(await metrics_text(second), "gateway_images_stored_total", collection="one") == 0


@pytest.mark.embedded
async def test_identity_calls_can_be_observed() -> None:
    from gateway.metrics import Metrics

    metrics = Metrics()
    with pytest.raises(Unavailable), metrics.observe("identity", "identify"):
        raise Unavailable("identity service down")
    text = metrics.exposition().decode()
    assert value(text, "gateway_dependency_errors_total", dependency="identity", operation="identify") == 1
    assert value(text, "gateway_dependency_duration_seconds_count", dependency="identity", operation="identify") == 1


# --- access logs -------------------------------------------------------------------------------


@pytest.mark.embedded
async def test_access_log_fields_and_request_id(make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = await make_client()
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        response = await client.get("/collections", headers={"X-Request-ID": "trace-42"})
        assert response.headers["X-Request-ID"] == "trace-42"
        generated = (await client.get("/nowhere")).headers["X-Request-ID"]
        await client.close()
    records = {r.request_id: r for r in caplog.records if r.name == "gateway.access"}  # type: ignore[attr-defined]
    listed = records["trace-42"]
    assert (listed.method, listed.route, listed.status) == ("GET", "/collections", 200)  # type: ignore[attr-defined]
    assert listed.bytes > 0 and listed.duration_ms >= 0 and listed.user is None  # type: ignore[attr-defined]
    assert re.fullmatch(r"[0-9a-f]{32}", generated) and records[generated].status == 404  # type: ignore[attr-defined]


@pytest.mark.embedded
def test_json_log_lines_carry_the_fields() -> None:
    stream = io.StringIO()
    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    record.__dict__.update({"method": "GET", "route": "/x", "status": 200, "request_id": "r1", "bytes": 5, "duration_ms": 1.5, "user": "ann"})
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "GET /x" and line["level"] == "info" and line["logger"] == "gateway.access"
    assert {k: line[k] for k in ("method", "route", "status", "request_id", "bytes", "user")} == {
        "method": "GET", "route": "/x", "status": 200, "request_id": "r1", "bytes": 5, "user": "ann",
    }  # fmt: skip
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("info", "auto", stream)  # StringIO is no terminal: JSON
        logging.getLogger("gateway.test").info("hello")
        assert json.loads(stream.getvalue().splitlines()[-1])["message"] == "hello"
        configure("info", "text", stream)
        logging.getLogger("gateway.test").info("plain")
        assert stream.getvalue().splitlines()[-1].endswith("gateway.test: plain")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


# --- events ------------------------------------------------------------------------------------


async def subscribe(client: TestClient, path: str) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect(path)
    hello = await ws.receive_json(timeout=10)
    assert hello["event"] == "subscribed"
    return ws


async def next_event(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    return await ws.receive_json(timeout=10)


async def test_events_of_one_collection_and_of_all(client: TestClient) -> None:
    one = await subscribe(client, "/collections/watched/events")
    every = await subscribe(client, "/events")
    other = await upload(client, "elsewhere")
    doc = await upload(client, "watched", ai="yes")
    patched = await client.patch(f"/collections/watched/images/{doc['id']}", json={"ai": "no"})
    assert patched.status == 200
    assert (await client.delete(f"/collections/watched/images/{doc['id']}")).status == 200

    received = [await next_event(one) for _ in range(3)]
    assert [e["event"] for e in received] == ["upload", "update", "delete"]
    assert all(e["collection"] == "watched" and e["id"] == doc["id"] for e in received)
    assert received[0]["document"] == doc
    assert received[1]["document"]["properties"] == {"ai": "no"}
    assert received[0]["seq"] < received[1]["seq"] < received[2]["seq"]
    everything = [await next_event(every) for _ in range(4)]
    assert [(e["event"], e["collection"]) for e in everything] == [
        ("upload", "elsewhere"), ("upload", "watched"), ("update", "watched"), ("delete", "watched"),
    ]  # fmt: skip
    assert everything[0]["id"] == other["id"]
    await one.close()
    await every.close()


@pytest.mark.embedded
async def test_events_reach_subscribers_of_another_replica(aiohttp_client: Any, tmp_path: Path) -> None:
    """Two apps on one data directory are two replicas sharing SQLite: the event log joins them."""
    config = make_config(tmp_path)
    writer = await aiohttp_client(create_app(config))
    reader = await aiohttp_client(create_app(config))
    ws = await subscribe(reader, "/collections/shared/events")
    assert reader.app[EVENTS].mode == "polling"
    doc = await upload(writer, "shared")
    event = await next_event(ws)
    assert (event["event"], event["id"]) == ("upload", doc["id"])
    assert event["document"]["url"].startswith(str(reader.make_url("/")))
    await ws.close()


@pytest.mark.embedded
async def test_event_feed_rejects_bad_collection_names(make_client: Any) -> None:
    client = await make_client()
    response = await client.get("/collections/Bad Name/events")
    assert response.status == 400
    assert (await response.json())["error"]["code"]


@pytest.mark.embedded
async def test_a_failing_event_log_does_not_fail_uploads(make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.service.events import EventWriter

    client = await make_client()

    attempted = asyncio.Event()

    async def broken(*args: Any) -> None:
        attempted.set()
        raise OSError("disk full")

    # Someone follows the log (else the writer skips the batch without writing).
    await client.app[EVENTS].log.listen_until(time.time() + 60)
    monkeypatch.setattr(client.app[EVENTS].log, "append_many", broken)
    doc = await upload(client, "resilient")
    assert (await client.get(f"/collections/resilient/images/{doc['id']}")).status == 200
    writer = next(listener.__self__ for listener in client.app[SERVICE].listeners if getattr(listener, "__func__", None) is EventWriter.publish)
    # The writer counts the loss in the same step as the failed write, before this task resumes.
    await asyncio.wait_for(attempted.wait(), 10)
    assert writer.dropped == 1


async def test_events_are_not_written_while_nobody_follows_them(make_client: Any) -> None:
    """No subscriber on any replica (no listeners' lease): the writer skips the event log's two
    commands; once a subscription is announced, uploads reach the log and the subscriber."""
    from gateway.service.events import EventWriter

    client = await make_client()
    events_log = client.app[EVENTS].log
    writer = next(listener.__self__ for listener in client.app[SERVICE].listeners if getattr(listener, "__func__", None) is EventWriter.publish)
    await upload(client, "quiet")
    for _ in range(200):
        if writer.skipped:
            break
        await asyncio.sleep(0.05)
    assert writer.skipped == 1
    assert await events_log.latest() == 0
    ws = await subscribe(client, "/collections/quiet/events")
    doc = await upload(client, "quiet")
    assert (await ws.receive_json(timeout=10))["id"] == doc["id"]
    await ws.close()
    assert await events_log.latest() >= 1


@pytest.mark.embedded
async def test_server_shutdown_closes_event_sockets(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path)))
    ws = await subscribe(client, "/events")
    await client.server.close()
    message = await ws.receive(timeout=10)
    assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE, aiohttp.WSCloseCode.GOING_AWAY)
