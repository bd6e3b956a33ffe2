"""Fixtures for the three tiers: embedded (filesystem + SQLite), S3 on moto's HTTP server, and the
real peers (MinIO and FerretDB built by `make peers`), all on free loopback ports.

Apps are built with the same factory as production, from a config dict (`tests/helpers.py`
builds them; tests import from there, never from here). Real-peer tests skip when the binaries
are absent, unless GATEWAY_REQUIRE_PEERS=1 (set by .ci/run) makes that a failure. The terminal
summary ends with what the counting suites sent and which tests were skipped, and why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import Config
from gateway.metadata import open_metadata, open_metadata_store
from gateway.metadata.base import EventLog, MetadataStore
from gateway.storage import open_blob_store
from gateway.storage.base import BlobStore
from tests import peers
from tests.helpers import (
    APP_BACKENDS, METADATA_BACKENDS, STORAGE_BACKENDS, app_overrides, make_config, metadata_overrides, missing_peer,
    storage_overrides,
)  # fmt: skip


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = peers.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.MinioServer]:
    if peers.peer_binary("minio") is None:
        missing_peer("minio")
    with peers.MinioServer(tmp_path_factory.mktemp("minio")) as server:
        yield server


@pytest.fixture(scope="session")
def ferretdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.FerretDBServer]:
    if peers.peer_binary("ferretdb") is None:
        missing_peer("ferretdb")
    with peers.FerretDBServer(tmp_path_factory.mktemp("ferretdb")) as server:
        yield server


@pytest.fixture(params=STORAGE_BACKENDS)
async def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    config = make_config(tmp_path, storage_overrides(request, request.param))
    async with open_blob_store(config) as store:
        yield store


@pytest.fixture(params=METADATA_BACKENDS)
async def metadata_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    config = make_config(tmp_path, metadata_overrides(request, request.param))
    async with open_metadata_store(config) as store:
        yield store


@pytest.fixture(params=METADATA_BACKENDS)
def metadata_config(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    """The configuration of one metadata backend, for tests that open it more than once."""
    return make_config(tmp_path, metadata_overrides(request, request.param))


@pytest.fixture
async def event_log(metadata_config: Config) -> AsyncIterator[EventLog]:
    """The event log as the app opens it: together with the metadata store, on one connection."""
    async with open_metadata(metadata_config) as (_store, log):
        yield log


@pytest.fixture(params=APP_BACKENDS)
def app_config(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    """The configuration of one backend pair; tests may `dataclasses.replace` parts of it."""
    return make_config(tmp_path, app_overrides(request, request.param))


@pytest.fixture
async def client(aiohttp_client: Any, app_config: Config) -> TestClient:
    return await aiohttp_client(create_app(app_config))


@pytest.fixture
async def make_client(aiohttp_client: Any, tmp_path: Path) -> Any:
    """Build a client for a config made from override trees, on the embedded backends unless
    the trees say otherwise."""

    async def build(*trees: dict[str, Any]) -> TestClient:
        return await aiohttp_client(create_app(make_config(tmp_path, *trees)))

    return build


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exit_stack:
        yield exit_stack


# --- the summary ---------------------------------------------------------------------------------

# Suites that count what they sent record each answer's status with `record_property(name,
# status)`. Added up from the reports, the count is what ran: under `-k`, or split across
# processes, too.
TALLIES = {"bad_input_status": "bad-input suite: {} cases run", "fuzzed_status": "schemathesis: {} fuzzed requests"}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    statuses: dict[str, list[int]] = {name: [] for name in TALLIES}
    skipped: Counter[str] = Counter()
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) == "call":
                for name, value in report.user_properties:
                    if name in statuses:
                        statuses[name].append(value)
            if getattr(report, "skipped", False) and not hasattr(report, "wasxfail") and isinstance(report.longrepr, tuple):
                skipped[report.longrepr[2].removeprefix("Skipped: ")] += 1
    lines = []
    for name, label in TALLIES.items():
        if statuses[name]:
            errors = sum(status >= 500 for status in statuses[name])
            lines.append(f"{label.format(len(statuses[name]))}, {errors or 'zero'} 5xx")
    for reason, count in skipped.most_common():
        lines.append(f"{count} {'test' if count == 1 else 'tests'} skipped: {reason}")
    if lines:
        terminalreporter.write_sep("-", "what ran")
        for line in lines:
            terminalreporter.write_line(line)
