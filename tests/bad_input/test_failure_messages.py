"""When the backends fail, the answer says so without leaking where they are or how they are
reached: no endpoint, no data path, no credential, no stack trace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from tests import peers
from tests.helpers import make_config, mongo_overrides, png, s3_overrides
from tests.bad_input.requests import Body, Part, image_form, multipart, send

pytestmark = pytest.mark.peers


def assert_no_leak(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked into {text[:300]!r}"
    for marker in ("/tmp", "Traceback", "File \"", "127.0.0.1", "localhost", "mongodb://"):
        assert marker not in text, f"{marker!r} leaked into {text[:300]!r}"


async def test_stopped_object_store_and_database_answer_503_without_leaks(
    aiohttp_client: Any, tmp_path: Path, ferretdb: peers.FerretDBServer, minio: peers.MinioServer
) -> None:
    # Dedicated peers, so stopping them leaves the session's shared ones alone.
    with peers.MinioServer(tmp_path / "minio") as store, peers.FerretDBServer(tmp_path / "ferretdb") as database:
        config = make_config(tmp_path, s3_overrides(store.endpoint, store.access_key, store.secret_key), mongo_overrides(database.url))
        client = await aiohttp_client(create_app(config))
        response = await send(client, "POST", "/collections/c/images", Body.form(image_form(png())))
        assert response.status == 200, await response.text()
        secrets = [store.secret_key, store.access_key, store.endpoint, database.url, str(tmp_path)]

        store.stop()
        response = await send(client, "POST", "/collections/c/images", Body.form(multipart(Part(b"image", png(seed=2), b"b.png"))))
        text = await response.text()
        assert (response.status, json.loads(text)["error"]["code"]) == (503, "storage_unavailable"), text
        assert_no_leak(text, secrets)

        # One request: each waits out the driver's server-selection timeout.
        database.stop()
        response = await send(client, "GET", "/collections/c/images")
        text = await response.text()
        assert (response.status, json.loads(text)["error"]["code"]) == (503, "database_unavailable"), text
        assert_no_leak(text, secrets)
