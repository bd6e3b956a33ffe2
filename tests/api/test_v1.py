"""Seed 000's `/v1/images` API over embedded and over MinIO+FerretDB."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import jpeg, png


async def create(client: TestClient, image: bytes, path: str = "/v1/images", **extra: Any) -> dict[str, Any]:
    response = await client.post(path, json={"data": base64.b64encode(image).decode(), **extra})
    assert response.status == 201, await response.text()
    return await response.json()


@pytest.mark.parametrize("path", ["/v1/images", "/v1/images/"])
async def test_create_and_get(client: TestClient, path: str) -> None:
    image = jpeg((20, 10))
    doc = await create(client, image, path)
    assert {"id", "path"} <= set(doc)
    assert doc["path"] == f"images/{doc['id']}.jpg"
    assert doc["sha256"] == hashlib.sha256(image).hexdigest()
    for suffix in ("", "/"):
        fetched = await (await client.get(f"/v1/images/{doc['id']}{suffix}")).json()
        assert fetched["id"] == doc["id"] and fetched["path"] == doc["path"]


async def test_base64_with_line_breaks_and_spaces(client: TestClient) -> None:
    image = png((64, 64))
    wrapped = base64.encodebytes(image).decode()  # 76-character lines, as `base64 file` prints
    assert "\n" in wrapped
    # Raw newlines inside the JSON string, as a hand-built payload has them.
    body = ('{"data": "' + wrapped + '"}').encode()
    response = await client.post("/v1/images", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 201, await response.text()
    # The seed's `echo '{"data": "'$data'"}'` joins the lines with spaces.
    spaced = '{"data": "' + " ".join(wrapped.split()) + '"}'
    response = await client.post("/v1/images", data=spaced, headers={"Content-Type": "application/json"})
    assert response.status == 201


async def test_filename_and_properties(client: TestClient) -> None:
    doc = await create(client, png(), filename="../../etc/passwd.png", properties={"camera": "A", "score": 3})
    assert doc["image"] == "passwd.png"
    assert doc["properties"] == {"camera": "A", "score": 3}


async def test_download_redirects_to_object(client: TestClient) -> None:
    image = png((5, 5))
    doc = await create(client, image)
    response = await client.get(f"/v1/images/{doc['id']}/image", allow_redirects=False)
    assert response.status == 302
    async with aiohttp.ClientSession() as session, session.get(response.headers["Location"]) as fetched:
        assert await fetched.read() == image
        assert fetched.headers["Content-Type"] == "image/png"


async def test_pages_with_next_and_previous(client: TestClient) -> None:
    ids = [(await create(client, png(seed=i)))["id"] for i in range(5)]
    first = await (await client.get("/v1/images?offset=0&limit=2")).json()
    assert first["kind"] == "Collection"
    assert [d["id"] for d in first["data"]] == ids[::-1][:2]
    assert first["previous"] is None
    assert first["next"].endswith("/v1/images?offset=2&limit=2") and first["next"].startswith("http://")
    middle = await (await client.get("/v1/images?offset=2&limit=2")).json()
    assert [d["id"] for d in middle["data"]] == ids[::-1][2:4]
    assert middle["previous"].endswith("/v1/images?offset=0&limit=2")
    last = await (await client.get("/v1/images?offset=4&limit=2")).json()
    assert [d["id"] for d in last["data"]] == ids[::-1][4:]
    assert last["next"] is None and last["previous"].endswith("offset=2&limit=2")
    everything = await (await client.get("/v1/images")).json()
    assert len(everything["data"]) == 5 and everything["next"] is None


async def test_delete(client: TestClient) -> None:
    doc = await create(client, png())
    response = await client.delete(f"/v1/images/{doc['id']}")
    assert await response.json() == {"image_id": doc["id"]}
    assert (await client.get(f"/v1/images/{doc['id']}")).status == 404
    assert (await client.delete(f"/v1/images/{doc['id']}")).status == 404


async def test_v1_images_are_visible_as_a_collection(client: TestClient) -> None:
    doc = await create(client, png())
    listed = await (await client.get("/collections/images/images")).json()
    assert [d["id"] for d in listed] == [doc["id"]]
    assert await (await client.get("/collections")).json() == ["images"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_body"),
        (b'{"data": "!!!notbase64!!!"}', 400, "invalid_base64"),
        (b'{"data": ""}', 400, "invalid_base64"),
        (b'{"data": 42}', 400, "invalid_base64"),
        (b'{"nodata": "AAAA"}', 400, "unknown_field"),
        (b'{"data": "' + base64.b64encode(b"plain text, not an image") + b'"}', 415, "unsupported_image"),
        (b'{"data": "' + base64.b64encode(png()[:-20]) + b'"}', 400, "truncated_image"),
        (b'{"data": "' + base64.b64encode(png()) + b'", "properties": {"$set": 1}}', 400, "invalid_property_key"),
        (b'{"data": "' + base64.b64encode(png()) + b'", "properties": [1]}', 400, "invalid_properties"),
        (b'{"data": "' + base64.b64encode(png()) + b'", "filename": 7}', 400, "invalid_body"),
    ],
)
async def test_bad_uploads_are_refused_and_store_nothing(client: TestClient, body: bytes, status: int, code: str) -> None:
    response = await client.post("/v1/images", data=body, headers={"Content-Type": "application/json"})
    assert response.status == status
    assert (await response.json())["error"]["code"] == code
    assert (await (await client.get("/v1/images")).json())["data"] == []
    assert await (await client.get("/collections")).json() == []


@pytest.mark.parametrize("query", ["offset=-1", "limit=0", "limit=1001", "limit=abc", "offset=1e3", "page=2"])
async def test_bad_page_parameters(client: TestClient, query: str) -> None:
    response = await client.get(f"/v1/images?{query}")
    assert response.status == 400
    assert (await response.json())["error"]["code"] in ("invalid_parameter", "unknown_parameter")


@pytest.mark.parametrize("ident", ["nope", "0" * 23, "g" * 24, "0" * 25])
async def test_malformed_or_unknown_ids_are_404(client: TestClient, ident: str) -> None:
    for path in (f"/v1/images/{ident}", f"/v1/images/{ident}/image"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "image_not_found"
