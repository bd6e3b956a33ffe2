"""The original service's own Python usage examples (its `usage_example/` folder and README, at
v2.8.1, the release seed 001 describes), run with `requests` against a live server, each checked
against what the original answered. Only the URL and ids are filled in; where a script names a
route the original itself no longer served (`/images` without a collection), the collection route
it served instead is used, and the test says so."""

from __future__ import annotations

import asyncio
from pathlib import Path
from time import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import jpeg

requests = pytest.importorskip("requests", reason="the examples are requests scripts; requests is in the test extra")


def base_url(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


async def run(script: Any) -> Any:
    # requests blocks; the server runs on this loop.
    return await asyncio.to_thread(script)


@pytest.fixture
def example_image(tmp_path: Path) -> Path:
    path = tmp_path / "example_image.jpg"
    path.write_bytes(jpeg((64, 48), seed=3))
    return path


async def upload_example(client: TestClient, example_image: Path) -> Any:
    """usage_example/upload.py, as written."""

    def script() -> Any:
        IMAGE_PATH = str(example_image)  # noqa: N806
        STORAGE_SERVICE_URL = base_url(client)  # noqa: N806
        COLLECTION = "example"  # noqa: N806
        url = f"{STORAGE_SERVICE_URL}/collections/{COLLECTION}/images"
        fields = {
            "work": "100-001",
            "ai_prediction": "OK",
            "frame_index": 12,
        }
        with open(IMAGE_PATH, "rb") as image:  # the script leaves it open; warnings are errors here
            files = {"image": (f"{time()}.jpg", image.read())}
        return requests.post(url, data=fields, files=files, timeout=30)

    return await run(script)


async def test_upload_example_with_an_int_valued_field(client: TestClient, example_image: Path) -> None:
    response = await upload_example(client, example_image)
    # The original: 200 with the inserted document. Form fields arrive as text (formidable), so
    # `frame_index: 12` was stored as "12"; the file name is the one the client sent.
    assert response.status_code == 200
    doc = response.json()
    assert doc["properties"] == {"work": "100-001", "ai_prediction": "OK", "frame_index": "12"}
    assert doc["image"].endswith(".jpg") and len(doc["_id"]) == 24 and doc["time"]


async def test_read_all_example(client: TestClient, example_image: Path) -> None:
    uploaded = (await upload_example(client, example_image)).json()

    def script() -> Any:
        # usage_example/read_all.py names `/images`, a route of the original's older releases;
        # v2.8.1 served the listing under the collection, as does this service.
        STORAGE_SERVCICE_URL = base_url(client)  # noqa: N806
        url = f"{STORAGE_SERVCICE_URL}/collections/example/images"
        return requests.get(url, timeout=30)

    response = await run(script)
    # The original: 200 with a JSON array of the documents, newest first, up to 500.
    assert response.status_code == 200
    listing = response.json()
    assert isinstance(listing, list) and [d["_id"] for d in listing] == [uploaded["_id"]]


async def test_update_example_with_string_number_array_and_object(client: TestClient, example_image: Path) -> None:
    uploaded = (await upload_example(client, example_image)).json()

    def script() -> Any:
        STORAGE_SERVICE_URL = base_url(client)  # noqa: N806
        COLLECTION = "example"  # noqa: N806
        IMAGE_ID = uploaded["_id"]  # noqa: N806
        url = f"{STORAGE_SERVICE_URL}/collections/{COLLECTION}/images/{IMAGE_ID}"
        properties = {
            "string": "Hello",
            "number": 1,
            "array": ["Apple", "Banana", "Cherry"],
            "object": {"key": "value"},
        }
        return requests.patch(url, json=properties, timeout=30)

    response = await run(script)
    # The original: 200 with the updated document ($set, returnOriginal: false): the new values
    # with their JSON types, the upload's fields kept.
    assert response.status_code == 200
    doc = response.json()
    assert doc["properties"] == {
        "work": "100-001", "ai_prediction": "OK", "frame_index": "12",
        "string": "Hello", "number": 1, "array": ["Apple", "Banana", "Cherry"], "object": {"key": "value"},
    }
    again = await client.get(f"/collections/example/images/{uploaded['_id']}")
    assert (await again.json())["properties"] == doc["properties"]


async def test_delete_example(client: TestClient, example_image: Path) -> None:
    uploaded = (await upload_example(client, example_image)).json()

    def script() -> Any:
        # usage_example/delete.py names `/images/{id}` (older releases); v2.8.1's route is under
        # the collection.
        IMAGE_ID = uploaded["_id"]  # noqa: N806
        STORAGE_SERVCICE_URL = base_url(client)  # noqa: N806
        api_url = f"{STORAGE_SERVCICE_URL}/collections/example/images/{IMAGE_ID}"
        return requests.delete(api_url, timeout=30)

    response = await run(script)
    # The original: 200 with MongoDB's deletion result as JSON (the script prints response.json()).
    assert response.status_code == 200
    assert response.json()["deleted"] is True
    assert (await client.get(f"/collections/example/images/{uploaded['_id']}")).status == 404
    assert (await client.get("/collections/example/images")).status == 200


async def test_readme_query_example(client: TestClient, example_image: Path) -> None:
    uploaded = (await upload_example(client, example_image)).json()

    def script() -> Any:
        # The README's "Image query", with its undefined names (`api_url`, `ITEM_ID`, `fields`)
        # made the ones it defines.
        STORAGE_MS_URL = base_url(client)  # noqa: N806
        COLLECTION = "example"  # noqa: N806
        IMAGE_ID = uploaded["_id"]  # noqa: N806
        url = f"{STORAGE_MS_URL}/collections/{COLLECTION}/images/{IMAGE_ID}"
        return requests.get(url, timeout=30)

    response = await run(script)
    # The original: 200 with the document as text.
    assert response.status_code == 200
    assert f'"_id":"{uploaded["_id"]}"' in response.text.replace(" ", "")
