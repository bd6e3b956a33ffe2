"""The production path on real engines over loopback: readiness while MinIO stops and returns,
two gateway processes on one MinIO + FerretDB, and distributed MinIO (4 nodes) with one killed."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import create_app
from gateway.keys import CONFIG
from tests import peers
from tests.api.test_collections import upload
from tests.helpers import jpeg, make_config, merge, missing_peer, mongo_overrides, s3_overrides, unique
from tests.processes import healthy, start_server

pytestmark = pytest.mark.peers


async def eventually(check: Any, timeout: float, what: str) -> Any:
    """Retry `check` (an async callable) until it returns without AssertionError or `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except (AssertionError, aiohttp.ClientError):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout}s") from None
            await asyncio.sleep(0.1)


async def ready(client: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get("/ready")
    return response.status, await response.json()


# --- readiness against a MinIO of its own ------------------------------------------------------


@pytest.fixture
def own_minio(tmp_path: Path) -> Iterator[peers.MinioServer]:
    if peers.peer_binary("minio") is None:
        missing_peer("minio")
    with peers.MinioServer(tmp_path / "minio", browser=False) as server:
        yield server


async def test_ready_follows_minio_stopping_and_returning(own_minio: peers.MinioServer, aiohttp_client: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path, s3_overrides(own_minio.endpoint, own_minio.access_key, own_minio.secret_key))
    client = await aiohttp_client(create_app(config))
    status, body = await ready(client)
    assert status == 200, body
    own_minio.stop()
    status, body = await ready(client)
    assert status == 503 and body["failed"] == ["object_store"], body
    assert "object_store" in body["error"]["message"]
    assert (await client.get("/health")).status == 200
    own_minio.start()

    async def back() -> None:
        status, body = await ready(client)
        assert status == 200, body

    await eventually(back, 30, "/ready after MinIO restarted")
    doc = await upload(client, "after-restart", jpeg())
    assert (await client.get(f"/collections/after-restart/images/{doc['id']}")).status == 200


# --- two gateway processes ---------------------------------------------------------------------


@pytest.fixture
def two_gateways(minio: peers.MinioServer, ferretdb: peers.FerretDBServer, tmp_path: Path) -> Iterator[list[str]]:
    env = {
        "STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": minio.endpoint, "S3_BUCKET": unique("scale"),
        "AWS_ACCESS_KEY_ID": minio.access_key, "AWS_SECRET_ACCESS_KEY": minio.secret_key,
        "MONGODB_URL": ferretdb.url, "MONGODB_DB": unique("scale").replace("-", "_"),
    }  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    urls = []
    try:
        for name in ("a", "b"):
            proc, port = start_server(tmp_path / name, log=tmp_path / f"{name}.log", extra_env=env)
            procs.append(proc)
            assert healthy(port), f"gateway {name}"
            urls.append(f"http://127.0.0.1:{port}")
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()


async def post_image(session: aiohttp.ClientSession, base: str, collection: str, image: bytes) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("image", image, filename="shared.jpg", content_type="image/jpeg")
    async with session.post(f"{base}/collections/{collection}/images", data=form) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_two_gateway_processes_serve_each_others_uploads_and_events(two_gateways: list[str]) -> None:
    a, b = two_gateways
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{b}/collections/shared/events") as feed:
            hello = await feed.receive_json(timeout=10)
            # FerretDB has no change streams: replicas poll the shared event log.
            assert (hello["event"], hello["mode"]) == ("subscribed", "polling")
            for writer, reader in ((a, b), (b, a)):
                image = jpeg((48, 32), seed=len(writer))
                doc = await post_image(session, writer, "shared", image)
                async with session.get(f"{reader}/collections/shared/images/{doc['id']}") as response:
                    assert response.status == 200 and (await response.json())["sha256"] == doc["sha256"]
                async with session.get(f"{reader}/collections/shared/images/{doc['id']}/image") as response:
                    assert response.status == 200 and await response.read() == image
                event = await feed.receive_json(timeout=10)
                assert (event["event"], event["id"]) == ("upload", doc["id"])
                assert event["document"]["url"].startswith(b)
        async with session.get(f"{a}/metrics") as response:
            assert 'gateway_images_stored_total{collection="shared"} 1.0' in await response.text()


# --- distributed MinIO ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def distributed_minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.DistributedMinio]:
    if peers.peer_binary("minio") is None:
        missing_peer("minio")
    with peers.DistributedMinio(tmp_path_factory.mktemp("dist"), nodes=4) as pool:
        yield pool


async def test_distributed_minio_keeps_serving_with_a_node_killed(
    distributed_minio: peers.DistributedMinio, ferretdb: peers.FerretDBServer, aiohttp_client: Any, tmp_path: Path
) -> None:
    pool = distributed_minio
    trees = [s3_overrides(pool.endpoints[0], pool.access_key, pool.secret_key), mongo_overrides(ferretdb.url)]
    client = await aiohttp_client(create_app(make_config(tmp_path / "via0", *trees)))
    bucket = client.app[CONFIG].storage.s3.bucket
    # A second gateway whose endpoint is the node that will die.
    via_dead = await aiohttp_client(create_app(make_config(tmp_path / "via1", merge(*trees, {"storage": {"s3": {"endpoint_url": pool.endpoints[1], "bucket": bucket}}}))))
    before = [await upload(client, "erasure", jpeg((40, 40), seed=i)) for i in range(3)]
    assert (await ready(via_dead))[0] == 200

    pool.kill_node(1)
    try:
        # Right after a kill, the first PUT may be slowed or refused once (see DistributedMinio).
        after = await eventually(lambda: upload(client, "erasure", jpeg((40, 40), seed=9)), 20, "upload with a node down")
        for doc in [*before, after]:
            response = await client.get(f"/collections/erasure/images/{doc['id']}/image", allow_redirects=False)
            async with aiohttp.ClientSession() as session, session.get(response.headers["Location"]) as fetched:
                assert fetched.status == 200 and len(await fetched.read()) == doc["size"]
        status, body = await ready(client)
        assert status == 200 and body["checks"]["object_store"]["ok"], body
        # Readiness is per gateway: the one whose endpoint died says so and names the store.
        status, body = await ready(via_dead)
        assert status == 503 and body["failed"] == ["object_store"], body
    finally:
        pool.start_node(1)
