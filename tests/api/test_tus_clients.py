"""A tus client from PyPI (tuspy) against the gateway, on embedded and on MinIO+FerretDB: an
upload begun through one gateway instance and finished through another sharing the stores, as
replicas behind a load balancer would."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from typing import Any

from aiohttp.test_utils import TestClient
from tusclient import client as tus_client

from gateway.app import create_app
from gateway.config import Config
from gateway.keys import SERVICE
from tests.api.test_collections import fetch_object
from tests.api.test_tus import large_image
from tests.faults import assert_invariants

MiB = 1024 * 1024


def _send(endpoint: str, image: bytes, *, url: str | None = None, stop_at: int | None = None) -> tuple[str, Any]:
    # tuspy's uploader blocks (requests), so it runs in a thread beside the servers' loop.
    tus = tus_client.TusClient(endpoint)
    metadata = {"filename": "mountain.jpg", "properties": json.dumps({"trip": "alps"})}
    uploader = tus.uploader(file_stream=io.BytesIO(image), chunk_size=5 * MiB, metadata=metadata, url=url, upload_checksum=True)
    uploader.upload(stop_at=stop_at)
    return uploader.url, uploader.request


async def test_an_upload_begun_on_one_replica_is_finished_on_another(aiohttp_client: Any, app_config: Config) -> None:
    first: TestClient = await aiohttp_client(create_app(app_config))
    second: TestClient = await aiohttp_client(create_app(app_config))
    image = large_image()

    url, _ = await asyncio.to_thread(_send, str(first.make_url("/collections/travel/tus")), image, stop_at=5 * MiB)
    assert url.startswith(str(first.make_url("/collections/travel/tus/")))
    head = await second.head(url.replace(str(first.make_url("")), ""), headers={"Tus-Resumable": "1.0.0"})
    assert head.headers["Upload-Offset"] == str(5 * MiB)

    resumed = url.replace(str(first.make_url("")), str(second.make_url("")))
    _, last = await asyncio.to_thread(_send, str(second.make_url("/collections/travel/tus")), image, url=resumed)
    doc = json.loads(last.response_content)
    assert doc["sha256"] == hashlib.sha256(image).hexdigest()
    assert (doc["image"], doc["properties"]) == ("mountain.jpg", {"trip": "alps"})
    stored, _ = await fetch_object(second, doc)
    assert stored == image
    paths, keys = await assert_invariants(second.app[SERVICE])
    assert paths == keys == [doc["path"]]
