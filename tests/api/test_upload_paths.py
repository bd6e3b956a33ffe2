"""The three ways in (multipart, tus, direct) on embedded and on MinIO+FerretDB: the same file
gives the same document whichever way it came (SHA-256, orientation, size as displayed), and
`dedupe` answers the image already holding the bytes on each, storing no second copy."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.errors import Unavailable
from gateway.images import sniff
from gateway.keys import SERVICE
from tests.api.test_collections import form
from tests.api.test_direct_uploads import complete, send_form, start
from tests.api.test_tus import TUS, create, metadata, patch
from tests.faults import assert_invariants
from tests.test_camera_images import camera_image

# What depends on the upload, not the file: its id, time and links.
_PER_UPLOAD = {"_id", "id", "time", "updated_at", "path", "url", "thumbnail_url"}


def content_type_of(image: bytes) -> str:
    found = sniff(image[:32])
    assert found is not None
    return found.content_type


def same_file_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in doc.items() if name not in _PER_UPLOAD}


async def via_multipart(client: TestClient, image: bytes, collection: str, *, dedupe: bool = False, **properties: Any) -> dict[str, Any]:
    query = "?dedupe=true" if dedupe else ""
    response = await client.post(f"/collections/{collection}/images{query}", data=form(image, filename="turned.jpg", json=json.dumps(properties)))
    assert response.status == 200, await response.text()
    return await response.json()


async def via_tus(client: TestClient, image: bytes, collection: str, *, dedupe: bool = False, **properties: Any) -> dict[str, Any]:
    values = {"filename": "turned.jpg", "properties": json.dumps(properties)}
    if dedupe:
        values["dedupe"] = "true"
    location = await create(client, len(image), collection, **values)
    response = await patch(client, location, 0, image)
    assert response.status == 200, await response.text()
    return await response.json()


async def via_direct(client: TestClient, image: bytes, collection: str, *, dedupe: bool = False, **properties: Any) -> dict[str, Any]:
    content_type = content_type_of(image)
    started = await start(client, len(image), content_type, collection, filename="turned.jpg", properties=properties, dedupe=dedupe)
    assert await send_form(started, image, content_type) in (200, 201, 204)
    response = await complete(client, started)
    assert response.status == 200, await response.text()
    return await response.json()


PATHS = (via_multipart, via_tus, via_direct)


async def test_every_path_gives_the_same_document(client: TestClient) -> None:
    # Stored 40x20 with EXIF orientation 6: displayed 20x40.
    image = camera_image("JPEG", (40, 20), orientation=6)
    docs = [await send(client, image, "paths", rating=5) for send in PATHS]
    assert (docs[0]["width"], docs[0]["height"], docs[0]["pixel_width"], docs[0]["orientation"]) == (20, 40, 40, 6)
    assert same_file_fields(docs[1]) == same_file_fields(docs[0]) == same_file_fields(docs[2])
    listed = await (await client.get("/collections/paths/images", params={"sort": "time"})).json()
    assert [same_file_fields(doc) for doc in listed] == [same_file_fields(docs[0])] * 3
    paths, keys = await assert_invariants(client.app[SERVICE])
    assert sorted(paths) == sorted(keys) == sorted(doc["path"] for doc in docs)


async def test_dedupe_on_every_path_answers_the_first_copy(client: TestClient) -> None:
    image = camera_image("PNG", (30, 30))
    first = await via_multipart(client, image, "dedupe")
    for send in PATHS:
        again = await send(client, image, "dedupe", dedupe=True)
        assert again["id"] == first["id"] and again["duplicate"] is True, send.__name__
    # Without dedupe a copy is stored, as multipart does.
    copy = await via_tus(client, image, "dedupe")
    assert copy["id"] != first["id"] and "duplicate" not in copy
    paths, keys = await assert_invariants(client.app[SERVICE])
    assert sorted(paths) == sorted(keys) == sorted([first["path"], copy["path"]])  # the duplicates' copies went


async def test_a_repeated_last_patch_and_completion_answer_the_duplicate_again(client: TestClient) -> None:
    image = camera_image("PNG", (31, 17))
    first = await via_multipart(client, image, "again")
    location = await create(client, len(image), "again", dedupe="true")
    assert (await (await patch(client, location, 0, image)).json())["duplicate"] is True
    repeated = await patch(client, location, len(image), b"")
    assert repeated.status == 200 and (await repeated.json()) == {**first, "duplicate": True}
    started = await start(client, len(image), "image/png", "again", dedupe=True)
    assert await send_form(started, image, "image/png") in (200, 201, 204)
    assert (await (await complete(client, started)).json())["duplicate"] is True
    assert (await (await complete(client, started)).json())["id"] == first["id"]


async def test_a_multipart_dedupe_with_an_idempotency_key_is_answered_again(client: TestClient) -> None:
    image = camera_image("PNG", (12, 12))
    first = await via_multipart(client, image, "keys")
    headers = {"Idempotency-Key": "dedupe-1"}
    answers = []
    for _ in range(2):
        response = await client.post("/collections/keys/images?dedupe=true", data=form(image), headers=headers)
        assert response.status == 200, await response.text()
        answers.append(await response.json())
    assert answers[0] == answers[1] and answers[0]["id"] == first["id"] and answers[0]["duplicate"] is True
    assert len(await (await client.get("/collections/keys/images")).json()) == 1


async def test_tus_dedupe_metadata_must_be_a_flag(client: TestClient) -> None:
    response = await client.post(
        "/collections/flags/tus", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": metadata(dedupe="perhaps")}
    )
    assert response.status == 400 and (await response.json())["error"]["code"] == "invalid_metadata"
    refused = await client.post("/collections/flags/uploads", json={"size": 10, "content_type": "image/png", "dedupe": "yes"})
    assert refused.status == 400


async def test_a_duplicate_whose_upload_cannot_be_marked_done_keeps_its_copy_for_the_retry(client: TestClient) -> None:
    image = camera_image("PNG", (20, 20))
    first = await via_multipart(client, image, "faulty")
    location = await create(client, len(image), "faulty", dedupe="true")
    service = client.app[SERVICE]
    meta = service.meta
    original = meta.replace_upload

    async def failing_when_done(upload: Any, expected: int) -> bool:
        # The completion saves the lease, then `finishing`, then `done`: that one fails.
        if upload.image_id is not None:
            raise Unavailable("injected", code="injected")
        return await original(upload, expected)

    meta.replace_upload = failing_when_done
    answered = await patch(client, location, 0, image)
    # Answered as the duplicate it is; the upload is not marked done, so its copy stays.
    assert answered.status == 200 and (await answered.json())["id"] == first["id"]
    paths, keys = await assert_invariants(service)
    assert paths == [first["path"]] and len(keys) == 2
    meta.replace_upload = original
    # A retry of the last PATCH dedupes again, marks the upload done and removes the copy.
    retry = await patch(client, location, len(image), b"")
    assert retry.status == 200 and (await retry.json())["duplicate"] is True
    paths, keys = await assert_invariants(service)
    assert paths == keys == [first["path"]]
