"""Issue 9: the later API's data tools over embedded and MinIO+FerretDB: property discovery,
projection, time windows, batch reads, duplicate detection and writes by filter."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.api.test_collections import fetch_object, form, upload
from tests.helpers import png


def q(value: Any) -> str:
    return quote(json.dumps(value))


async def ok(response: aiohttp.ClientResponse) -> Any:
    assert response.status == 200, await response.text()
    return await response.json()


async def refused(response: aiohttp.ClientResponse, status: int = 400) -> str:
    assert response.status == status, await response.text()
    return (await response.json())["error"]["code"]


@pytest.fixture
async def labelled(client: TestClient) -> list[dict[str, Any]]:
    typed = [
        {"label": "cat", "score": 1, "box": {"x": 1, "y": {"z": 2}}, "tags": ["a", "b"]},
        {"label": "dog", "score": 1.0, "tags": ["a"]},
        {"label": "cat", "score": "high", "box": {"x": 3}},
        {"label": "cat", "flag": True, "tags": []},
        {"label": None},
    ]
    return [await upload(client, "tools", png(seed=i), json=json.dumps(t)) for i, t in enumerate(typed)]


async def test_fields_lists_keys_in_use_nested_dotted(client: TestClient, labelled: list[dict[str, Any]]) -> None:
    answer = await ok(await client.get("/collections/tools/fields"))
    assert answer["fields"] == [
        {"key": "box", "count": 2}, {"key": "box.x", "count": 2}, {"key": "box.y", "count": 1}, {"key": "box.y.z", "count": 1},
        {"key": "flag", "count": 1}, {"key": "label", "count": 5}, {"key": "score", "count": 3}, {"key": "tags", "count": 3},
    ]
    assert (answer["scanned"], answer["complete"]) == (5, True)
    dogs = await ok(await client.get("/collections/tools/fields?property.label=dog"))
    assert [f["key"] for f in dogs["fields"]] == ["label", "score", "tags"]
    assert await refused(await client.get("/collections/nowhere/fields"), 404) == "collection_not_found"
    assert await refused(await client.get("/collections/tools/fields?limit=5")) == "invalid_parameter"


async def test_field_values_with_counts(client: TestClient, labelled: list[dict[str, Any]]) -> None:
    label = await ok(await client.get("/collections/tools/fields/label"))
    assert label["values"] == [{"value": "cat", "count": 3}, {"value": "dog", "count": 1}] and label["more"] is False
    # 1 and 1.0 are one number; "high" a string, after numbers.
    score = await ok(await client.get("/collections/tools/fields/score"))
    assert [(v["value"], v["count"]) for v in score["values"]] == [(1, 2), ("high", 1)]
    # An array holds each of its elements.
    tags = await ok(await client.get("/collections/tools/fields/tags"))
    assert tags["values"] == [{"value": "a", "count": 2}, {"value": "b", "count": 1}]
    nested = await ok(await client.get("/collections/tools/fields/box.x"))
    assert nested["key"] == "box.x" and nested["values"] == [{"value": 1, "count": 1}, {"value": 3, "count": 1}]
    first = await ok(await client.get("/collections/tools/fields/label?limit=1"))
    assert first["values"] == [{"value": "cat", "count": 3}] and first["more"] is True
    filtered = await ok(await client.get("/collections/tools/fields/label?filter=" + q({"score": {"$exists": True}})))
    assert filtered["values"] == [{"value": "cat", "count": 2}, {"value": "dog", "count": 1}]
    for bad in ("%24where", "a..b", "a.%24gt"):
        assert await refused(await client.get(f"/collections/tools/fields/{bad}")) == "invalid_parameter"


async def test_projection(client: TestClient, labelled: list[dict[str, Any]]) -> None:
    for name in ("fields", "select"):
        docs = await ok(await client.get(f"/collections/tools/images?{name}=time,label,properties.box.x&sort=time"))
        assert docs[0] == {"_id": labelled[0]["id"], "id": labelled[0]["id"], "time": labelled[0]["time"], "properties": {"label": "cat", "box": {"x": 1}}}
        assert docs[1] == {"_id": labelled[1]["id"], "id": labelled[1]["id"], "time": labelled[1]["time"], "properties": {"label": "dog"}}
    spaced = await ok(await client.get("/collections/tools/images?select=size%20sha256&limit=1"))
    assert set(spaced[0]) == {"_id", "id", "size", "sha256"}
    assert await refused(await client.get("/collections/tools/images?fields=%24where")) == "invalid_parameter"
    assert await refused(await client.get("/collections/tools/images?fields=a&select=b")) == "invalid_parameter"


async def test_time_windows(client: TestClient, labelled: list[dict[str, Any]]) -> None:
    times = [d["time"] for d in labelled]
    window = await ok(await client.get(f"/collections/tools/images?from={quote(times[1])}&to={quote(times[3])}&sort=time"))
    assert [d["time"] for d in window] == [t for t in times if times[1] <= t <= times[3]]
    assert await ok(await client.get("/collections/tools/images?to=2000-01-01T00:00:00Z")) == []
    assert len(await ok(await client.get("/collections/tools/images?from=2000-01-01"))) == 5
    equivalent = await ok(await client.get("/collections/tools/images?filter=" + q({"time": {"$gte": times[2]}})))
    assert equivalent == await ok(await client.get(f"/collections/tools/images?from={quote(times[2])}"))
    assert await refused(await client.get("/collections/tools/images?from=yesterday")) == "invalid_parameter"


async def test_batch_reads_by_ids(client: TestClient, labelled: list[dict[str, Any]]) -> None:
    wanted = [labelled[0]["id"], labelled[3]["id"]]
    for query in (f"ids={','.join(wanted)}", f"ids={wanted[0]}&ids={wanted[1]}", f"ids={wanted[0].upper()},{wanted[1]},{'0' * 24}"):
        assert sorted(d["id"] for d in await ok(await client.get(f"/collections/tools/images?{query}"))) == sorted(wanted)
    assert await refused(await client.get("/collections/tools/images?ids=nope")) == "invalid_parameter"


async def test_every_document_has_its_sha256_and_listing_finds_by_it(client: TestClient, labelled: list[dict[str, Any]]) -> None:
    for index, doc in enumerate(labelled):
        assert doc["sha256"] == hashlib.sha256(png(seed=index)).hexdigest()
    found = await ok(await client.get(f"/collections/tools/images?sha256={labelled[2]['sha256'].upper()}"))
    assert [d["id"] for d in found] == [labelled[2]["id"]]
    assert await ok(await client.get(f"/collections/tools/images?sha256={'0' * 64}")) == []
    assert await refused(await client.get("/collections/tools/images?sha256=abc")) == "invalid_parameter"


async def test_dedupe_upload_answers_the_existing_image(client: TestClient) -> None:
    first = await upload(client, "dedupe", png(seed=7), label="first")
    again = await client.post("/collections/dedupe/images?dedupe=true", data=form(png(seed=7), label="second"))
    doc = await ok(again)
    assert doc["duplicate"] is True and doc["id"] == first["id"] and doc["properties"] == {"label": "first"}
    field = await ok(await client.post("/collections/dedupe/images", data=form(png(seed=7), dedupe="true")))
    assert field["duplicate"] is True and field["id"] == first["id"]
    assert (await (await client.get("/collections/dedupe")).json())["documents"] == 1
    # Nothing of the refused copies stays: the one object is the first image's.
    assert (await fetch_object(client, first))[0] == png(seed=7)
    other = await ok(await client.post("/collections/dedupe/images?dedupe=1", data=form(png(seed=8))))
    assert "duplicate" not in other and other["id"] != first["id"]
    plain = await ok(await client.post("/collections/dedupe/images", data=form(png(seed=7))))
    assert "duplicate" not in plain and plain["id"] != first["id"]
    assert await refused(await client.post("/collections/dedupe/images?dedupe=maybe", data=form(png(seed=7)))) == "invalid_parameter"


async def test_patch_by_filter(client: TestClient, labelled: list[dict[str, Any]]) -> None:
    answer = await ok(await client.patch("/collections/tools/images?property.label=cat", json={"reviewed": True, "box": None}))
    assert answer == {"matched": 3, "updated": 3, "unchanged": 0, "more": False, "after": None, "next": None}
    cats = await ok(await client.get("/collections/tools/images?property.label=cat"))
    assert all(d["properties"]["reviewed"] is True and "box" not in d["properties"] for d in cats)
    dog = await ok(await client.get(f"/collections/tools/images/{labelled[1]['id']}"))
    assert "reviewed" not in dog["properties"]
    # A retry changes nothing more.
    again = await ok(await client.patch("/collections/tools/images?property.label=cat", json={"reviewed": True, "box": None}))
    assert (again["matched"], again["updated"], again["unchanged"]) == (3, 0, 3)


async def test_patch_by_filter_in_capped_steps(client: TestClient, labelled: list[dict[str, Any]]) -> None:
    url: str | None = "/collections/tools/images?limit=2&filter=" + q({"_id": {"$in": [d["id"] for d in labelled]}})
    steps = []
    while url:
        answer = await ok(await client.patch(url, json={"batch": "x"}))
        steps.append((answer["updated"], answer["more"]))
        url = answer["next"][answer["next"].index("/collections") :] if answer["next"] else None
    assert steps == [(2, True), (2, True), (1, False)]
    everything = await ok(await client.get("/collections/tools/images"))
    assert all(d["properties"]["batch"] == "x" for d in everything)


async def test_delete_by_filter(client: TestClient, labelled: list[dict[str, Any]]) -> None:
    answer = await ok(await client.delete("/collections/tools/images?property.label=cat&limit=2"))
    assert answer == {"matched": 3, "deleted": 2, "more": True}
    answer = await ok(await client.delete("/collections/tools/images?property.label=cat&limit=2"))
    assert answer == {"matched": 1, "deleted": 1, "more": False}
    assert await ok(await client.delete("/collections/tools/images?property.label=cat")) == {"matched": 0, "deleted": 0, "more": False}
    left = await ok(await client.get("/collections/tools/images"))
    assert sorted(d["id"] for d in left) == sorted([labelled[1]["id"], labelled[4]["id"]])
    gone = labelled[0]
    assert (await client.get(f"/collections/tools/images/{gone['id']}/image", allow_redirects=False)).status == 404
    assert (await (await client.get("/collections/tools")).json())["documents"] == 2


async def test_writes_by_filter_refuse_an_empty_filter_unless_all(client: TestClient, labelled: list[dict[str, Any]]) -> None:
    for query in ("", "?filter=%7B%7D", "?all=false"):
        assert await refused(await client.delete(f"/collections/tools/images{query}")) == "filter_required"
        assert await refused(await client.patch(f"/collections/tools/images{query}", json={"a": 1})) == "filter_required"
    assert len(await ok(await client.get("/collections/tools/images"))) == 5
    for query in ("?sort=time", "?skip=1", "?cursor=x", "?fields=a", "?all=yes"):
        assert await refused(await client.delete(f"/collections/tools/images{query}&all=true".replace("?&", "?"))) == "invalid_parameter"
    assert await refused(await client.patch("/collections/tools/images?all=true", json={"$set": 1})) == "invalid_property_key"
    assert await refused(await client.patch("/collections/tools/images?all=true&after=zz", json={"a": 1})) == "invalid_parameter"
    assert len(await ok(await client.get("/collections/tools/images?filter=" + q({"a": {"$exists": True}})))) == 0
    everything = await ok(await client.patch("/collections/tools/images?all=true", json={"all": 1}))
    assert (everything["matched"], everything["updated"]) == (5, 5)
    assert await ok(await client.delete("/collections/tools/images?all=true")) == {"matched": 5, "deleted": 5, "more": False}
    assert await ok(await client.get("/collections/tools/images")) == []


async def test_writes_by_filter_emit_events(client: TestClient, labelled: list[dict[str, Any]]) -> None:
    async with client.ws_connect("/collections/tools/events") as ws:
        assert (await ws.receive_json(timeout=10))["event"] == "subscribed"
        await ok(await client.patch("/collections/tools/images?property.label=dog", json={"seen": 1}))
        await ok(await client.delete("/collections/tools/images?property.label=dog"))
        kinds: list[dict[str, Any]] = []
        while len(kinds) < 2:
            event = await ws.receive_json(timeout=10)
            # The fixture's uploads were acknowledged before the subscription: their events may
            # still be on their way (written after it began), and are no part of this test.
            if event["event"] != "upload":
                kinds.append(event)
    assert [(k["event"], k["id"]) for k in kinds] == [("update", labelled[1]["id"]), ("delete", labelled[1]["id"])]
