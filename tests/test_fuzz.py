"""Schemathesis against the OpenAPI document: both seed APIs, auth off and on (and auth off on
MinIO+FerretDB), a fixed seed and a bounded number of examples. No answer may be a 5xx, and every 4xx carries the JSON error body.

The gateway runs in a thread with its own event loop, because schemathesis calls it with the
blocking `requests` client.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings

from gateway.api import openapi
from gateway.app import create_app
from tests.auth.helpers import API_KEYS, WRITER_KEY
from tests.helpers import app_overrides, make_config
from tests.peers import free_port

EXAMPLES_PER_OPERATION = 8

# tus bodies are raw bytes under their own media type.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
schema = schemathesis.openapi.from_dict(openapi.document(create_app(make_config(Path(tempfile.mkdtemp(prefix="fuzz-schema-"))))))


class ServerThread:
    def __init__(self, app: web.Application):
        self.port = free_port()
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(self._app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def __enter__(self) -> str:
        self._thread.start()
        assert self._ready.wait(30), "the gateway did not start"
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(("embedded", "auth-off"), id="embedded-auth-off", marks=pytest.mark.embedded),
        pytest.param(("embedded", "auth-on"), id="embedded-auth-on", marks=pytest.mark.embedded),
        # Auth changes nothing the backends see, so the real peers fuzz with it off only.
        pytest.param(("minio+ferretdb", "auth-off"), id="minio+ferretdb-auth-off", marks=pytest.mark.peers),
    ],
)
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    backends, auth = request.param
    trees: list[dict[str, Any]] = [app_overrides(request, backends)]
    headers: dict[str, str] = {}
    if auth == "auth-on":
        trees.append({"auth": {"enabled": True, "api_keys": API_KEYS}})
        headers = {"X-API-Key": WRITER_KEY}
    config = make_config(tmp_path_factory.mktemp("fuzz"), *trees, {"limits": {"max_upload_bytes": 1024 * 1024}})
    with ServerThread(create_app(config)) as base_url:
        yield base_url, headers


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_every_error_is_json(case: Any, gateway: tuple[str, dict[str, str]], record_property: Any) -> None:
    base_url, headers = gateway
    response = case.call(base_url=base_url, headers=headers, allow_redirects=False, timeout=30)
    # Counted in the terminal summary (tests/conftest.py).
    record_property("fuzzed_status", response.status_code)
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:300])
    if response.status_code >= 400 and case.method != "HEAD":
        body = response.json()
        assert isinstance(body.get("error", {}).get("code"), str) and isinstance(body["error"].get("message"), str), response.text[:300]

