"""The embedded default (filesystem + SQLite) needs no MongoDB driver: run with PyMongo unimportable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.embedded

SCRIPT = r'''
import asyncio, importlib.abc, sys

VENDOR = ("pymongo", "bson", "gridfs")


class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in VENDOR:
            raise ImportError(f"{name} is not installed")
        return None


sys.meta_path.insert(0, Refuse())

from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.config import load_config
from tests.helpers import png


async def main() -> None:
    config = load_config(environ={}, overrides={"data_dir": sys.argv[1]})
    async with TestClient(TestServer(create_app(config))) as client:
        async with client.ws_connect("/events") as feed:
            assert (await feed.receive_json(timeout=10))["event"] == "subscribed"
            form = FormData()
            form.add_field("image", png(), filename="a.png", content_type="image/png")
            created = await client.post("/collections/plain/images", data=form)
            assert created.status == 200, await created.text()
            doc = await created.json()
            assert (await feed.receive_json(timeout=10))["id"] == doc["id"]
        listed = await client.get("/collections/plain/images")
        assert [d["id"] for d in await listed.json()] == [doc["id"]]
        assert (await client.delete(f"/collections/plain/images/{doc['id']}")).status == 200
    loaded = sorted(m for m in sys.modules if m.partition(".")[0] in VENDOR)
    assert not loaded, loaded
    print("ok")


asyncio.run(main())
'''


def test_upload_list_feed_and_delete_without_pymongo(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "data")], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
