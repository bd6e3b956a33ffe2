"""Dataset export and import over HTTP and the command line: the round trip, the original
service's format, idempotent re-import, and refused archives (bombs, traversal, oversized)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway import cli
from gateway.config import Config
from gateway.keys import SERVICE
from tests.faults import assert_invariants, install
from tests.helpers import jpeg, png


async def upload(client: TestClient, collection: str, image: bytes, **properties: Any) -> dict[str, Any]:
    data = aiohttp.FormData()
    data.add_field("json", json.dumps(properties))
    data.add_field("image", image, filename="photo é.png", content_type="application/octet-stream")
    response = await client.post(f"/collections/{collection}/images", data=data)
    assert response.status == 200, await response.text()
    return await response.json()


async def import_zip(client: TestClient, collection: str, archive: bytes, field: str = "archive") -> aiohttp.ClientResponse:
    data = aiohttp.FormData()
    data.add_field(field, archive, filename="dataset.zip", content_type="application/zip")
    return await client.post(f"/collections/{collection}/import", data=data)


async def listing(client: TestClient, collection: str) -> list[dict[str, Any]]:
    return await (await client.get(f"/collections/{collection}/images?limit=1000")).json()


async def image_bytes(client: TestClient, doc: dict[str, Any]) -> bytes:
    service = client.server.app[SERVICE]
    return b"".join([chunk async for chunk in service.blobs.get(doc["path"])])


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def test_round_trip_keeps_bytes_properties_and_ids(client: TestClient) -> None:
    originals = [
        await upload(client, "source", png(seed=1), label="cat", box=[1, 2, 3, 4]),
        await upload(client, "source", jpeg(seed=2), label="dog", nested={"score": 0.5}),
        await upload(client, "source", png((300, 200), seed=3)),
    ]
    response = await client.get("/collections/source/export")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert "Content-Length" not in response.headers  # streamed, not built first
    archive = await response.read()
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        names = set(opened.namelist())
        original_format = json.loads(opened.read("mongodb_data.json"))
        ours = [json.loads(line) for line in opened.read("metadata.jsonl").splitlines()]
    assert names == {d["path"].split("/")[1] for d in originals} | {"metadata.jsonl", "mongodb_data.json"}
    by_id = {doc["_id"]: doc for doc in original_format}
    assert by_id[originals[0]["id"]] == {"_id": originals[0]["id"], "time": originals[0]["time"], "image": originals[0]["path"].split("/")[1], "label": "cat", "box": [1, 2, 3, 4]}
    assert {doc["sha256"] for doc in ours} == {d["sha256"] for d in originals}

    response = await import_zip(client, "copy", archive)
    assert response.status == 200, await response.text()
    assert (await response.json())["imported"] == 3
    copies = {doc["id"]: doc for doc in await listing(client, "copy")}
    assert set(copies) == {d["id"] for d in originals}
    for doc in originals:
        copy = copies[doc["id"]]
        assert (copy["properties"], copy["time"], copy["sha256"], copy["image"]) == (doc["properties"], doc["time"], doc["sha256"], doc["image"])
        assert hashlib.sha256(await image_bytes(client, copy)).hexdigest() == doc["sha256"]

    again = await (await import_zip(client, "copy", archive)).json()
    assert (again["imported"], again["skipped"], again["rejected"]) == (0, 3, 0)  # changes nothing
    assert len(await listing(client, "copy")) == 3
    await assert_invariants(client.server.app[SERVICE])


async def test_original_service_archive(client: TestClient) -> None:
    ids = ["5f1d7f3b9c1e4a0012345678", "5f1d7f3b9c1e4a0012345679"]
    documents = [
        {"_id": ids[0], "time": "2020-07-26T12:00:00.123000", "image": "first.png", "label": "cat", "count": 2},
        {"_id": {"$oid": ids[1]}, "time": {"$date": "2021-01-02T03:04:05.678Z"}, "image": "second.jpg", "label": "dog"},
        {"_id": "not-an-id", "time": "2020-01-01T00:00:00", "image": "first.png"},
        {"_id": "5f1d7f3b9c1e4a001234567a", "time": "2020-01-01T00:00:00", "image": "absent.png"},
        {"_id": "5f1d7f3b9c1e4a001234567b", "time": "2020-01-01T00:00:00", "image": "notes.txt"},
    ]
    archive = zip_of(
        {
            "first.png": png(seed=5),
            "second.jpg": jpeg(seed=6),
            "notes.txt": b"not an image",
            "mongodb_data.json": json.dumps(documents).encode(),
            "mongodb_data.xlsx": b"ignored",
        },
        zipfile.ZIP_DEFLATED,
    )
    response = await import_zip(client, "legacy", archive)
    assert response.status == 200, await response.text()
    summary = await response.json()
    assert (summary["imported"], summary["skipped"], summary["rejected"]) == (2, 0, 3)
    assert all(entry["reason"] for entry in summary["entries"])
    docs = {doc["id"]: doc for doc in await listing(client, "legacy")}
    assert docs[ids[0]]["properties"] == {"label": "cat", "count": 2}
    assert docs[ids[0]]["time"] == "2020-07-26T12:00:00.123Z"
    assert docs[ids[1]]["time"] == "2021-01-02T03:04:05.678Z"
    assert docs[ids[1]]["image"] == "second.jpg"
    paths, keys = await assert_invariants(client.server.app[SERVICE])
    assert paths == keys and len(keys) == 2  # rejected entries left nothing


@pytest.mark.parametrize(
    "name",
    ["../escape.png", "/etc/passwd", "a/../../b.png", "c:\\windows.png", "..\\up.png"],
)
async def test_path_traversal_refused(client: TestClient, name: str) -> None:
    archive = zip_of({name: png(), "mongodb_data.json": json.dumps([{"_id": "5f1d7f3b9c1e4a0012345678", "image": "x.png"}]).encode()})
    response = await import_zip(client, "evil", archive)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "unsafe_member_name"
    assert await assert_invariants(client.server.app[SERVICE]) == ([], [])


async def test_zip_bomb_refused(client: TestClient) -> None:
    bomb = zip_of({"bomb.png": b"\0" * (20 * 1024 * 1024), "mongodb_data.json": b"[]"}, zipfile.ZIP_DEFLATED)
    assert len(bomb) < 100_000
    response = await import_zip(client, "bomb", bomb)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "zip_bomb"


async def test_member_lying_about_its_size_refused(client: TestClient) -> None:
    """The central directory may declare less than the member inflates to."""
    image = png((200, 200), seed=9)
    archive = bytearray(zip_of({"lie.png": image, "mongodb_data.json": json.dumps([{"_id": "5f1d7f3b9c1e4a0012345678", "image": "lie.png"}]).encode()}))
    declared = len(image).to_bytes(4, "little")
    smaller = (len(image) // 2).to_bytes(4, "little")
    # Both the local header and the central directory entry carry the size.
    archive = bytearray(bytes(archive).replace(declared + declared, smaller + smaller))
    response = await import_zip(client, "liar", bytes(archive))
    assert response.status == 200, await response.text()
    summary = await response.json()
    assert (summary["imported"], summary["rejected"]) == (0, 1)
    assert await assert_invariants(client.server.app[SERVICE]) == ([], [])


@pytest.mark.embedded
async def test_oversized_member_and_archive_refused(make_client: Any) -> None:
    client = await make_client({"limits": {"max_upload_bytes": 1000, "max_archive_bytes": 50_000}})
    big = png((300, 300), seed=4)
    archive = zip_of({"big.png": big, "mongodb_data.json": json.dumps([{"_id": "5f1d7f3b9c1e4a0012345678", "image": "big.png"}]).encode()})
    summary = await (await import_zip(client, "big", archive)).json()
    assert summary["rejected"] == 1 and "at most 1000 bytes" in summary["entries"][0]["reason"]
    response = await import_zip(client, "big", b"\0" * 60_000)
    assert response.status == 413


@pytest.mark.embedded
async def test_import_without_archive_or_with_junk(make_client: Any) -> None:
    client = await make_client()
    assert (await import_zip(client, "junk", png(), field="file")).status == 400
    response = await import_zip(client, "junk", b"this is no zip")
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_archive"
    assert (await client.get("/collections/nothing-here/export")).status == 404


async def test_command_line_export_and_resumable_import(client: TestClient, app_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [await upload(client, "cli-src", png(seed=seed), n=seed) for seed in range(4)]
    monkeypatch.setattr(cli, "load_config", lambda path: app_config)
    assert await asyncio.to_thread(cli.main, ["export", "cli-src", str(tmp_path / "out.zip")]) == 0
    assert await asyncio.to_thread(cli.main, ["export", "cli-src", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([d["path"].split("/")[1] for d in docs] + ["metadata.jsonl", "mongodb_data.json"])
    # An interrupted import: half of it is in already.
    lines = (tmp_path / "out" / "metadata.jsonl").read_text().splitlines()
    half = tmp_path / "half"
    half.mkdir()
    for line in lines[:2]:
        member = json.loads(line)["member"]
        (half / member).write_bytes((tmp_path / "out" / member).read_bytes())
    (half / "metadata.jsonl").write_text("\n".join(lines[:2]) + "\n")
    assert await asyncio.to_thread(cli.main, ["import", str(half), "--collection", "cli-dst"]) == 0
    assert await asyncio.to_thread(cli.main, ["import", str(tmp_path / "out.zip"), "--collection", "cli-dst", "--concurrency", "3"]) == 0
    copies = {doc["id"]: doc for doc in await listing(client, "cli-dst")}
    assert {i: (d["sha256"], d["properties"]) for i, d in copies.items()} == {d["id"]: (d["sha256"], d["properties"]) for d in docs}


async def test_export_failing_midway_cuts_the_connection(client: TestClient) -> None:
    """After the 200 is sent, a store failure must not look like a complete (shorter) zip."""
    for seed in range(3):
        await upload(client, "cut", png(seed=seed))
    blobs, _ = install(client.server.app[SERVICE])
    blobs.fail_before["get"] = 1
    response = await client.get("/collections/cut/export")
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
