"""Fixtures for the three tiers: embedded (filesystem + SQLite), S3 on moto's HTTP server, and the
real peers (MinIO and FerretDB built by `make peers`), all on free loopback ports.

Apps are built with the same factory as production, from a config dict. Real-peer tests skip
when the binaries are absent, unless GATEWAY_REQUIRE_PEERS=1 (set by .ci/run) makes that a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import Config, load_config
from gateway.metadata import open_metadata, open_metadata_store
from gateway.metadata.base import EventLog, MetadataStore
from gateway.storage import open_blob_store
from gateway.storage.base import BlobStore
from tests import peers

REQUIRE_PEERS = os.environ.get("GATEWAY_REQUIRE_PEERS", "") not in ("", "0", "false")
MOTO_CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


def _missing_peer(name: str) -> None:
    message = f"{name} is not built: run `make peers` (real-peer tier)"
    if REQUIRE_PEERS:
        pytest.fail(message + "; GATEWAY_REQUIRE_PEERS=1 forbids skipping", pytrace=False)
    pytest.skip(message)


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
        _missing_peer("minio")
    with peers.MinioServer(tmp_path_factory.mktemp("minio")) as server:
        yield server


@pytest.fixture(scope="session")
def ferretdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.FerretDBServer]:
    if peers.peer_binary("ferretdb") is None:
        _missing_peer("ferretdb")
    with peers.FerretDBServer(tmp_path_factory.mktemp("ferretdb")) as server:
        yield server


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def s3_overrides(endpoint: str, access_key: str, secret_key: str) -> dict[str, Any]:
    return {
        "storage": {
            "backend": "s3",
            "s3": {"endpoint_url": endpoint, "bucket": unique("test"), "access_key_id": access_key, "secret_access_key": secret_key},
        }
    }


def mongo_overrides(url: str) -> dict[str, Any]:
    return {"metadata": {"backend": "mongodb", "mongodb_url": url, "mongodb_db": unique("db").replace("-", "_")}}


def merge(*trees: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for tree in trees:
        for key, value in tree.items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merge(result[key], value)
            else:
                result[key] = value
    return result


def make_config(tmp_path: Path, *trees: dict[str, Any]) -> Config:
    return load_config(environ={}, overrides=merge({"data_dir": str(tmp_path / "data")}, *trees))


# --- backend selection ----------------------------------------------------------------------

STORAGE_BACKENDS = [
    pytest.param("filesystem", marks=pytest.mark.embedded),
    pytest.param("moto", marks=pytest.mark.moto),
    pytest.param("minio", marks=pytest.mark.peers),
]
METADATA_BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.embedded),
    pytest.param("ferretdb", marks=pytest.mark.peers),
]
APP_BACKENDS = [
    pytest.param("embedded", marks=pytest.mark.embedded),
    pytest.param("minio+ferretdb", marks=pytest.mark.peers),
]


def storage_overrides(request: pytest.FixtureRequest, backend: str) -> dict[str, Any]:
    if backend == "moto":
        return s3_overrides(request.getfixturevalue("moto_endpoint"), "testing", "testing")
    if backend == "minio":
        server = request.getfixturevalue("minio")
        return s3_overrides(server.endpoint, server.access_key, server.secret_key)
    return {}


def metadata_overrides(request: pytest.FixtureRequest, backend: str) -> dict[str, Any]:
    if backend == "ferretdb":
        return mongo_overrides(request.getfixturevalue("ferretdb").url)
    return {}


def app_overrides(request: pytest.FixtureRequest, backend: str) -> dict[str, Any]:
    if backend == "minio+ferretdb":
        return merge(storage_overrides(request, "minio"), metadata_overrides(request, "ferretdb"))
    return {}


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
