"""The seeds' own client snippets, run as written against a live server."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import jpeg


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("base64") is None, reason="needs the curl and base64 commands")
async def test_seed_000_curl_and_base64_flow(client: TestClient, tmp_path: Path) -> None:
    image = jpeg((300, 200))  # large enough that `base64` wraps it over many lines
    (tmp_path / "image.jpg").write_bytes(image)
    base = str(client.make_url("")).rstrip("/")
    # Seed 000, section 2.1, verbatim but for the host.
    script = f"""
data=$(base64 "image.jpg")
echo '{{"data": "'$data'"}}' > payload.json
curl -s -X POST {base}/v1/images/ -d @payload.json -H 'Content-Type: application/json'
"""
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", script, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err
    created = json.loads(out)
    assert set(created) >= {"id", "path"}
    # Section 2.2 and 2.4 with curl too.
    process = await asyncio.create_subprocess_exec("curl", "-s", f"{base}/v1/images/{created['id']}", stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert json.loads(out)["path"] == created["path"]
    process = await asyncio.create_subprocess_exec("curl", "-s", "-L", f"{base}/v1/images/{created['id']}/image", stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert out == image
    process = await asyncio.create_subprocess_exec("curl", "-s", "-X", "DELETE", f"{base}/v1/images/{created['id']}", stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert json.loads(out) == {"image_id": created["id"]}


async def test_seed_001_requests_multipart_example(client: TestClient, tmp_path: Path) -> None:
    import requests

    image_path = tmp_path / "example_image.jpg"
    image_path.write_bytes(jpeg((64, 48)))

    def seed_snippet() -> requests.Response:
        # Seed 001's example, as written (its `api_url` is the `url` it builds).
        IMAGE_PATH = str(image_path)  # noqa: N806
        STORAGE_MS_URL = str(client.make_url("")).rstrip("/")  # noqa: N806
        COLLECTION = "example"  # noqa: N806
        url = f"{STORAGE_MS_URL}/collections/{COLLECTION}/images"
        fields = {"ai_prediction": "OK"}
        with open(IMAGE_PATH, "rb") as handle:
            files = {"image": handle}
            return requests.post(url, data=fields, files=files, timeout=30)

    response = await asyncio.to_thread(seed_snippet)
    assert response.status_code == 200
    doc = response.json()
    assert doc["properties"] == {"ai_prediction": "OK"}
    assert doc["image"] == "example_image.jpg"
    fetched = await asyncio.to_thread(requests.get, doc["url"], timeout=30)
    assert fetched.content == image_path.read_bytes()
