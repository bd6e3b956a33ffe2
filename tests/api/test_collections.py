"""Seed 001's API over embedded and over MinIO+FerretDB."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import jpeg, make_image, png


def form(image: bytes | None, filename: str = "photo.png", **fields: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in fields.items():
        data.add_field(name, value)
    if image is not None:
        data.add_field("image", image, filename=filename, content_type="application/octet-stream")
    return data


async def upload(client: TestClient, collection: str = "example", image: bytes | None = None, **fields: str) -> dict[str, Any]:
    response = await client.post(f"/collections/{collection}/images", data=form(image or png(), **fields))
    assert response.status == 200, await response.text()
    return await response.json()


async def fetch_object(client: TestClient, doc: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """Follow the /image redirect for real: S3 presigned URLs point at the object store."""
    response = await client.get(f"/collections/{doc['collection']}/images/{doc['id']}/image", allow_redirects=False)
    assert response.status == 302
    location = response.headers["Location"]
    async with aiohttp.ClientSession() as session, session.get(location) as fetched:
        assert fetched.status == 200, await fetched.text()
        return await fetched.read(), dict(fetched.headers)


async def test_app_info_names_backends_without_secrets(client: TestClient, app_config: Any) -> None:
    response = await client.get("/")
    info = await response.json()
    assert info["name"] == "image-gateway"
    assert info["storage"] == app_config.storage.backend
    assert info["metadata"] == app_config.metadata.backend
    assert info["authentication"] is False
    text = json.dumps(info)
    for secret in ("testing", "minio", "mongodb://", "secret"):
        if app_config.storage.s3.secret_access_key:
            assert app_config.storage.s3.secret_access_key.reveal() not in text
        assert "mongodb://" not in text


async def test_upload_stores_document_and_bytes(client: TestClient) -> None:
    image = jpeg((40, 30))
    doc = await upload(client, "example", image, ai_prediction="OK")
    assert doc["_id"] == doc["id"] and len(doc["id"]) == 24
    assert doc["collection"] == "example"
    assert doc["properties"] == {"ai_prediction": "OK"}
    assert (doc["format"], doc["content_type"], doc["width"], doc["height"]) == ("jpeg", "image/jpeg", 40, 30)
    assert doc["size"] == len(image)
    assert doc["sha256"] == hashlib.sha256(image).hexdigest()
    assert doc["path"] == f"example/{doc['id']}.jpg"
    assert doc["url"].endswith(f"/collections/example/images/{doc['id']}/image")
    assert doc["image"] == "photo.png"
    assert doc["time"].endswith("Z") and doc["updated_at"] == doc["time"]
    body, headers = await fetch_object(client, doc)
    assert body == image
    assert headers["Content-Type"] == "image/jpeg"
    assert "photo.png" in headers.get("Content-Disposition", "")


async def test_declared_type_is_not_trusted(client: TestClient) -> None:
    data = aiohttp.FormData()
    data.add_field("image", png(), filename="cat.jpg", content_type="image/jpeg")
    response = await client.post("/collections/c1/images", data=data)
    doc = await response.json()
    assert doc["content_type"] == "image/png" and doc["path"].endswith(".png")


async def test_same_filename_twice_is_two_images(client: TestClient) -> None:
    first = await upload(client, "dups", png(seed=1))
    second = await upload(client, "dups", png(seed=2))
    assert first["id"] != second["id"] and first["image"] == second["image"]
    assert (await fetch_object(client, first))[0] == png(seed=1)
    assert (await fetch_object(client, second))[0] == png(seed=2)


async def test_json_field_gives_typed_properties(client: TestClient) -> None:
    typed = {"score": 0.93, "labels": ["cat", "dog"], "reviewed": True, "box": {"x": 1, "y": 2}}
    for field in ("json", "json_properties", "properties_json"):
        doc = await upload(client, "typed", png(), source="camera-1", **{field: json.dumps(typed)})
        assert doc["properties"] == {"source": "camera-1", **typed}


async def test_collections_listing_and_stats(client: TestClient) -> None:
    assert await (await client.get("/collections")).json() == []
    a = await upload(client, "alpha", png((10, 10)))
    await upload(client, "alpha", png((12, 12)))
    await upload(client, "beta", png())
    assert await (await client.get("/collections")).json() == ["alpha", "beta"]
    stats = await (await client.get("/collections/alpha")).json()
    assert stats["name"] == "alpha" and stats["documents"] == 2
    assert stats["bytes"] == a["size"] + len(png((12, 12)))
    assert stats["created_at"] <= stats["updated_at"]
    missing = await client.get("/collections/nope")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "collection_not_found"


async def test_list_is_newest_first_with_paging(client: TestClient) -> None:
    ids = [(await upload(client, "pages", png(seed=i)))["id"] for i in range(5)]
    response = await client.get("/collections/pages/images")
    listed = await response.json()
    assert [d["id"] for d in listed] == ids[::-1]
    assert response.headers["X-Total-Count"] == "5"
    oldest_first = await (await client.get("/collections/pages/images?sort=time")).json()
    assert [d["id"] for d in oldest_first] == ids
    page = await (await client.get("/collections/pages/images?limit=2&skip=1")).json()
    assert [d["id"] for d in page] == ids[::-1][1:3]
    page = await (await client.get("/collections/pages/images?limit=2&offset=3")).json()
    assert [d["id"] for d in page] == ids[::-1][3:5]


async def test_cursor_pages_follow_link_header(client: TestClient) -> None:
    ids = [(await upload(client, "walk", png(seed=i)))["id"] for i in range(7)]
    seen: list[str] = []
    url: str | None = "/collections/walk/images?limit=3"
    while url:
        response = await client.get(url)
        seen += [d["id"] for d in await response.json()]
        link = response.headers.get("Link")
        url = None
        if link:
            assert link.endswith('rel="next"')
            target = link[1 : link.index(">")]
            url = target[target.index("/collections") :]
    assert seen == ids[::-1]


async def test_filter_and_property_equality(client: TestClient) -> None:
    await upload(client, "f", png(seed=1), ai_prediction="OK", json=json.dumps({"score": 0.9, "tags": ["a", "b"]}))
    await upload(client, "f", png(seed=2), ai_prediction="NOK", json=json.dumps({"score": 0.2, "tags": ["b"]}))
    await upload(client, "f", png(seed=3), ai_prediction="OK", json=json.dumps({"score": 0.5}))

    async def ids_for(query: str) -> list[float]:
        response = await client.get(f"/collections/f/images?{query}")
        assert response.status == 200, await response.text()
        return sorted(d["properties"]["score"] for d in await response.json())

    assert await ids_for("property.ai_prediction=OK") == [0.5, 0.9]
    assert await ids_for("property.ai_prediction=OK&property.ai_prediction=NOK") == [0.2, 0.5, 0.9]
    from urllib.parse import quote

    def f(doc: dict[str, Any]) -> str:
        return "filter=" + quote(json.dumps(doc))

    assert await ids_for(f({"score": {"$gte": 0.5}})) == [0.5, 0.9]
    assert await ids_for(f({"score": {"$gt": 0.1, "$lt": 0.6}})) == [0.2, 0.5]
    assert await ids_for(f({"tags": "a"})) == [0.9]
    assert await ids_for(f({"tags": {"$in": ["b"]}})) == [0.2, 0.9]
    assert await ids_for(f({"tags": {"$exists": False}})) == [0.5]
    assert await ids_for(f({"ai_prediction": {"$ne": "OK"}})) == [0.2]
    assert await ids_for(f({"ai_prediction": {"$nin": ["OK", "NOK"]}})) == []
    assert await ids_for(f({"time": {"$gte": "2000-01-01T00:00:00Z"}})) == [0.2, 0.5, 0.9]
    assert await ids_for(f({"time": {"$lt": "2000-01-01T00:00:00Z"}})) == []


async def test_put_replaces_and_patch_merges(client: TestClient) -> None:
    doc = await upload(client, "props", png(), a="1", b="2")
    url = f"/collections/props/images/{doc['id']}"
    response = await client.put(url, json={"x": {"y": 1, "z": 2}, "keep": "yes"})
    assert response.status == 200
    replaced = await response.json()
    assert replaced["properties"] == {"x": {"y": 1, "z": 2}, "keep": "yes"}
    assert replaced["updated_at"] >= doc["updated_at"]
    patched = await (await client.patch(url, json={"x": {"z": None, "w": 3}, "keep": None, "new": [1]})).json()
    assert patched["properties"] == {"x": {"y": 1, "w": 3}, "new": [1]}
    assert (await (await client.get(url)).json())["properties"] == patched["properties"]
    assert (await (await client.get(url + "/info")).json())["properties"] == patched["properties"]


async def test_if_match_guards_updates(client: TestClient) -> None:
    doc = await upload(client, "etag", png())
    url = f"/collections/etag/images/{doc['id']}"
    tag = (await client.get(url)).headers["ETag"]
    first = await client.patch(url, json={"a": 1}, headers={"If-Match": tag})
    assert first.status == 200
    stale = await client.patch(url, json={"a": 2}, headers={"If-Match": tag})
    assert stale.status == 412
    assert (await (await client.get(url)).json())["properties"] == {"a": 1}


async def test_delete_image_removes_record_and_object(client: TestClient) -> None:
    doc = await upload(client, "del", png())
    url = f"/collections/del/images/{doc['id']}"
    response = await client.delete(url)
    assert response.status == 200
    assert (await response.json())["deleted"] is True
    assert (await client.get(url)).status == 404
    assert (await client.get(url + "/image", allow_redirects=False)).status == 404
    assert (await client.delete(url)).status == 404


async def test_delete_collection_only_touches_its_prefix(client: TestClient) -> None:
    gone = await upload(client, "images", png(seed=1))
    kept = await upload(client, "images2", png(seed=2))
    response = await client.delete("/collections/images")
    assert response.status == 200
    assert (await response.json())["deleted"] == {"documents": 1, "objects": 1}
    assert await (await client.get("/collections")).json() == ["images2"]
    assert (await client.get(f"/collections/images/images/{gone['id']}")).status == 404
    assert (await fetch_object(client, kept))[0] == png(seed=2)
    assert (await client.delete("/collections/images")).status == 404
    again = await upload(client, "images", png(seed=3))
    assert (await (await client.get("/collections/images")).json())["documents"] == 1
    assert again["id"] != gone["id"]


@pytest.mark.parametrize("noun", ["documents", "items"])
async def test_original_aliases(client: TestClient, noun: str) -> None:
    response = await client.post(f"/collections/alias/{noun}", data=form(png()))
    doc = await response.json()
    assert (await (await client.get(f"/collections/alias/{noun}/{doc['id']}")).json())["id"] == doc["id"]
    assert len(await (await client.get(f"/collections/alias/{noun}")).json()) == 1
    redirect = await client.get(f"/collections/alias/{noun}/{doc['id']}/file", allow_redirects=False)
    assert redirect.status == 302


@pytest.mark.parametrize("fmt", ["jpeg", "png", "gif", "webp", "tiff", "bmp"])
async def test_every_supported_format_round_trips(client: TestClient, fmt: str) -> None:
    image = make_image(fmt, (17, 9))
    doc = await upload(client, "formats", image)
    assert (doc["format"], doc["width"], doc["height"]) == (fmt, 17, 9)
    body, headers = await fetch_object(client, doc)
    assert body == image and headers["Content-Type"] == doc["content_type"]


async def test_concurrent_first_uploads_into_a_new_collection(client: TestClient) -> None:
    """The collection registry entry is created by whichever upload comes first; the others
    must not fail on the race (MongoDB answers a duplicate key to concurrent upserts)."""
    import asyncio

    responses = await asyncio.gather(*(client.post("/collections/fresh/images", data=form(png(seed=i))) for i in range(8)))
    assert [r.status for r in responses] == [200] * 8
    assert (await (await client.get("/collections/fresh")).json())["documents"] == 8
