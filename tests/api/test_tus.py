"""tus 1.0.0 resumable uploads over embedded and over MinIO+FerretDB: the protocol as a client
sees it, and the invariants an ordinary upload keeps (validation, nothing left behind)."""

from __future__ import annotations

import base64
import io
import functools
import hashlib
import json
from typing import Any

from aiohttp.test_utils import TestClient
from yarl import URL

from gateway.keys import SERVICE
from tests.api.test_collections import fetch_object
from tests.faults import assert_invariants, object_keys
from tests.helpers import jpeg, noisy_jpeg, png

TUS = {"Tus-Resumable": "1.0.0"}


@functools.cache
def large_image() -> bytes:
    """About 12 MB: more than one S3 part, so the multipart path and the tails are exercised."""
    return noisy_jpeg((3400, 3000))
STREAM = {**TUS, "Content-Type": "application/offset+octet-stream"}


def metadata(**values: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in values.items())


async def create(client: TestClient, length: int, collection: str = "resumable", **values: str) -> str:
    headers = {**TUS, "Upload-Length": str(length)}
    if values:
        headers["Upload-Metadata"] = metadata(**values)
    response = await client.post(f"/collections/{collection}/tus", headers=headers)
    assert response.status == 201, await response.text()
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Expires" in response.headers
    return path_of(response.headers["Location"])


def path_of(location: str) -> str:
    # Locations are absolute, as clients need them; the test client wants the path.
    url = URL(location)
    assert url.absolute
    return url.path


async def patch(client: TestClient, location: str, offset: int, body: bytes, **headers: str) -> Any:
    return await client.patch(location, data=io.BytesIO(body), headers={**STREAM, "Upload-Offset": str(offset), **headers})


async def offset_of(client: TestClient, location: str) -> int:
    response = await client.head(location, headers=TUS)
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    return int(response.headers["Upload-Offset"])


async def send_in_chunks(client: TestClient, location: str, image: bytes, size: int) -> dict[str, Any]:
    for start in range(0, len(image), size):
        response = await patch(client, location, start, image[start : start + size])
        if start + size < len(image):
            assert response.status == 204, await response.text()
            assert int(response.headers["Upload-Offset"]) == start + size
    assert response.status == 200, await response.text()
    assert int(response.headers["Upload-Offset"]) == len(image)
    return await response.json()


async def test_options_advertises_version_extensions_and_limits(client: TestClient) -> None:
    response = await client.options("/collections/resumable/tus")
    assert response.status == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) == {"creation", "creation-with-upload", "termination", "expiration", "checksum"}
    assert int(response.headers["Tus-Max-Size"]) == client.app[SERVICE].config.limits.max_upload_bytes
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256"}


async def test_upload_in_chunks_becomes_an_ordinary_image(client: TestClient) -> None:
    image = jpeg((300, 200), seed=4)
    properties = {"camera": "x100", "rating": 4}
    location = await create(
        client, len(image), filename="trip.jpg", content_type="image/jpeg",
        properties=json.dumps(properties),
    )
    assert await offset_of(client, location) == 0
    doc = await send_in_chunks(client, location, image, 1000)
    assert doc["collection"] == "resumable" and doc["image"] == "trip.jpg"
    assert doc["properties"] == properties
    assert doc["sha256"] == hashlib.sha256(image).hexdigest() and doc["size"] == len(image)
    assert (doc["width"], doc["height"], doc["content_type"]) == (300, 200, "image/jpeg")
    stored, _ = await fetch_object(client, doc)
    assert stored == image
    listed = await (await client.get(f"/collections/resumable/images/{doc['id']}")).json()
    assert listed["sha256"] == doc["sha256"]
    # The upload is complete: HEAD says so, and a repeated last PATCH answers the same image.
    assert await offset_of(client, location) == len(image)
    again = await patch(client, location, len(image), b"")
    assert again.status == 200 and (await again.json())["id"] == doc["id"]
    paths, keys = await assert_invariants(client.app[SERVICE])
    assert paths == keys == [doc["path"]]


async def test_an_image_larger_than_a_part_with_a_short_tail_between_requests(client: TestClient) -> None:
    image = large_image()
    part = client.app[SERVICE].config.storage.s3.part_size
    assert len(image) > part  # on S3: a multipart upload, with tails shorter than a part between PATCHes
    doc = await send_in_chunks(client, await create(client, len(image)), image, 3 * 1024 * 1024 + 17)
    stored, _ = await fetch_object(client, doc)
    assert hashlib.sha256(stored).hexdigest() == doc["sha256"] == hashlib.sha256(image).hexdigest()
    paths, keys = await assert_invariants(client.app[SERVICE])
    assert keys == [doc["path"]]


async def test_creation_with_upload_stores_the_whole_image_in_one_request(client: TestClient) -> None:
    image = png((40, 40))
    response = await client.post(
        "/collections/resumable/tus", data=image,
        headers={**STREAM, "Upload-Length": str(len(image)), "Upload-Metadata": metadata(filename="one.png")},
    )
    assert response.status == 201, await response.text()
    assert response.headers["Upload-Offset"] == str(len(image))
    doc = await response.json()
    assert doc["image"] == "one.png" and doc["sha256"] == hashlib.sha256(image).hexdigest()


async def test_creation_with_part_of_the_upload_then_the_rest(client: TestClient) -> None:
    image = png((64, 64), seed=2)
    response = await client.post("/collections/resumable/tus", data=image[:10], headers={**STREAM, "Upload-Length": str(len(image))})
    assert response.status == 201 and response.headers["Upload-Offset"] == "10"
    location = path_of(response.headers["Location"])
    response = await patch(client, location, 10, image[10:])
    assert response.status == 200, await response.text()
    doc = await response.json()
    assert doc["sha256"] == hashlib.sha256(image).hexdigest()


async def test_the_default_collection_has_its_own_endpoint(client: TestClient) -> None:
    image = png()
    response = await client.post("/v1/images/tus", headers={**TUS, "Upload-Length": str(len(image))})
    assert response.status == 201
    location = path_of(response.headers["Location"])
    assert location.startswith("/v1/images/tus/")
    doc = await (await patch(client, location, 0, image)).json()
    assert doc["collection"] == client.app[SERVICE].config.default_collection
    fetched = await client.get(f"/v1/images/{doc['id']}")
    assert fetched.status == 200


async def test_protocol_errors(client: TestClient) -> None:
    image = png()
    location = await create(client, len(image))
    no_version = await client.patch(location, data=image, headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert no_version.status == 412 and no_version.headers["Tus-Version"] == "1.0.0"
    wrong_type = await client.patch(location, data=image, headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/octet-stream"})
    assert wrong_type.status == 415
    wrong_offset = await patch(client, location, 5, image[5:])
    assert wrong_offset.status == 409 and (await wrong_offset.json())["error"]["code"] == "offset_mismatch"
    too_long = await patch(client, location, 0, image + b"xx")
    assert too_long.status == 413
    missing_length = await client.post("/collections/resumable/tus", headers=TUS)
    assert missing_length.status == 400
    too_large = await client.post("/collections/resumable/tus", headers={**TUS, "Upload-Length": str(10**12)})
    assert too_large.status == 413
    bad_metadata = await client.post("/collections/resumable/tus", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": "filename ***"})
    assert bad_metadata.status == 400
    bad_properties = await client.post(
        "/collections/resumable/tus", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": metadata(properties="[1]")}
    )
    assert bad_properties.status == 400
    unknown = await client.head("/collections/resumable/tus/" + "0" * 32, headers=TUS)
    assert unknown.status == 404
    malformed = await client.head("/collections/resumable/tus/../../etc", headers=TUS)
    assert malformed.status in (400, 404)
    other_collection = await client.head(location.replace("/resumable/", "/elsewhere/"), headers=TUS)
    assert other_collection.status == 404


async def test_checksums_sha1_and_sha256_and_460_on_a_mismatch(client: TestClient) -> None:
    image = png((50, 50), seed=9)
    location = await create(client, len(image))
    first, rest = image[:100], image[100:]
    wrong = await patch(client, location, 0, first, **{"Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(b"other").digest()).decode()})
    assert wrong.status == 460 and (await wrong.json())["error"]["code"] == "checksum_mismatch"
    assert await offset_of(client, location) == 0  # nothing of a mismatched body counts
    unsupported = await patch(client, location, 0, first, **{"Upload-Checksum": "md5 AAAA"})
    assert unsupported.status == 400
    ok = await patch(client, location, 0, first, **{"Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(first).digest()).decode()})
    assert ok.status == 204 and ok.headers["Upload-Offset"] == "100"
    done = await patch(client, location, 100, rest, **{"Upload-Checksum": "sha256 " + base64.b64encode(hashlib.sha256(rest).digest()).decode()})
    assert done.status == 200
    assert (await done.json())["sha256"] == hashlib.sha256(image).hexdigest()


async def test_termination_removes_the_upload_and_its_bytes(client: TestClient) -> None:
    image = noisy_jpeg((1200, 1000))
    location = await create(client, len(image))
    assert (await patch(client, location, 0, image[: len(image) // 2])).status == 204
    response = await client.delete(location, headers=TUS)
    assert response.status == 204
    assert (await client.head(location, headers=TUS)).status == 404
    assert await object_keys(client.app[SERVICE].blobs) == []


async def test_bytes_that_are_no_image_are_refused_at_once_and_the_upload_is_gone(client: TestClient) -> None:
    text = b"%PDF-1.7 this is not an image at all" * 10
    location = await create(client, len(text))
    response = await patch(client, location, 0, text[:100])
    assert response.status == 415 and (await response.json())["error"]["code"] == "unsupported_image"
    assert (await client.head(location, headers=TUS)).status == 404
    assert await object_keys(client.app[SERVICE].blobs) == []


async def test_a_truncated_image_is_refused_at_the_last_byte_with_nothing_left(client: TestClient) -> None:
    image = jpeg((200, 100))
    cut = image[:-40]
    location = await create(client, len(cut))
    response = await patch(client, location, 0, cut)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["code"] == "truncated_image"
    assert (await client.head(location, headers=TUS)).status == 404
    assert await object_keys(client.app[SERVICE].blobs) == []
    assert (await (await client.get("/collections/resumable/images")).json()) == []


async def test_creation_with_an_idempotency_key_answers_the_same_upload(client: TestClient) -> None:
    image = png(seed=7)
    headers = {**TUS, "Upload-Length": str(len(image)), "Idempotency-Key": "tus-1", "Upload-Metadata": metadata(filename="a.png")}
    first = await client.post("/collections/resumable/tus", headers=headers)
    again = await client.post("/collections/resumable/tus", headers=headers)
    assert first.status == again.status == 201
    assert first.headers["Location"] == again.headers["Location"]
    different = await client.post("/collections/resumable/tus", headers={**headers, "Upload-Length": str(len(image) + 1)})
    assert different.status == 422
    doc = await (await patch(client, path_of(first.headers["Location"]), 0, image)).json()
    assert doc["image"] == "a.png"


async def test_cors_lets_a_browser_on_another_origin_speak_tus(make_client: Any) -> None:
    client = await make_client({"cors": {"allowed_origins": ["https://app.example"]}})
    preflight = await client.options(
        "/collections/resumable/tus/" + "0" * 32,
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PATCH", "Access-Control-Request-Headers": "tus-resumable,upload-offset,content-type"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Headers"] == "tus-resumable,upload-offset,content-type"  # what it asked for
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"] and "HEAD" in preflight.headers["Access-Control-Allow-Methods"]
    # Asked for nothing: the headers this API reads, the protocol's among them.
    plain = await client.options("/collections/resumable/tus", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    allowed = {h.strip().lower() for h in plain.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"tus-resumable", "upload-offset", "upload-length", "upload-metadata", "upload-checksum", "idempotency-key"} <= allowed
    assert "OPTIONS" in plain.headers["Access-Control-Allow-Methods"]
    image = png()
    created = await client.post("/collections/resumable/tus", headers={**TUS, "Origin": "https://app.example", "Upload-Length": str(len(image))})
    exposed = {h.strip().lower() for h in created.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"location", "upload-offset", "upload-expires", "tus-resumable", "tus-version", "tus-max-size"} <= exposed


async def test_a_resumable_upload_is_counted_and_announced_as_any_upload(client: TestClient) -> None:
    events: list[tuple[str, str]] = []

    async def listen(kind: str, record: Any) -> None:
        events.append((kind, record.id))

    client.app[SERVICE].listeners.append(listen)
    image = png(seed=11)
    doc = await (await patch(client, await create(client, len(image), collection="counted"), 0, image)).json()
    assert events == [("upload", doc["id"])]
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_images_stored_total{collection="counted"} 1.0' in metrics
