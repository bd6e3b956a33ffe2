"""Direct uploads over embedded (a signed gateway form) and MinIO+FerretDB (a presigned POST to
the bucket): the client cannot tell the difference, completion validates as an ordinary upload
does, and nothing is left of a refused or abandoned upload."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.keys import SERVICE
from gateway.metadata.base import utcnow
from gateway.service.reconcile import reconcile
from gateway.uploads.sweep import sweep
from tests.api.test_collections import fetch_object
from tests.api.test_tus import path_of
from tests.faults import assert_invariants, object_keys
from tests.helpers import jpeg, png


async def start(client: TestClient, size: int, content_type: str = "image/jpeg", collection: str = "direct", **extra: Any) -> dict[str, Any]:
    response = await client.post(f"/collections/{collection}/uploads", json={"size": size, "content_type": content_type, **extra})
    assert response.status == 201, await response.text()
    return await response.json()


async def send_form(started: dict[str, Any], body: bytes, content_type: str = "image/jpeg") -> int:
    """What a browser does with the form: the fields, then the file, to `url`, wherever it is."""
    form = aiohttp.FormData()
    for name, value in started["fields"].items():
        form.add_field(name, value)
    form.add_field("file", body, filename="photo.jpg", content_type=content_type)
    async with aiohttp.ClientSession() as session, session.post(started["url"], data=form) as response:
        return response.status


async def complete(client: TestClient, started: dict[str, Any], **headers: str) -> Any:
    return await client.post(path_of(started["complete_url"]), headers=headers)


async def test_direct_upload_then_completion_records_the_image(client: TestClient) -> None:
    image = jpeg((120, 90), seed=2)
    started = await start(client, len(image), filename="beach.jpg", properties={"place": "coast"})
    assert started["method"] == "POST" and set(started) == {"id", "method", "url", "fields", "expires_at", "complete_url"}
    assert await send_form(started, image) in (200, 201, 204)
    response = await complete(client, started)
    assert response.status == 200, await response.text()
    doc = await response.json()
    assert (doc["image"], doc["properties"], doc["width"]) == ("beach.jpg", {"place": "coast"}, 120)
    assert doc["sha256"] == hashlib.sha256(image).hexdigest()
    stored, _ = await fetch_object(client, doc)
    assert stored == image
    again = await complete(client, started)
    assert again.status == 200 and (await again.json())["id"] == doc["id"]
    paths, keys = await assert_invariants(client.app[SERVICE])
    assert paths == keys == [doc["path"]]


async def test_bytes_that_are_no_image_are_refused_at_completion_with_nothing_left(client: TestClient) -> None:
    text = b"this is a text file, not a picture" * 100
    started = await start(client, len(text))
    assert await send_form(started, text) in (200, 201, 204)
    response = await complete(client, started)
    assert response.status == 415, await response.text()
    assert (await response.json())["error"]["code"] == "unsupported_image"
    assert await object_keys(client.app[SERVICE].blobs) == []
    assert (await complete(client, started)).status == 404  # the upload went with its object


async def test_a_truncated_image_is_refused_at_completion(client: TestClient) -> None:
    image = png((80, 80))
    started = await start(client, len(image), content_type="image/png")
    assert await send_form(started, image[:-10], content_type="image/png") in (200, 201, 204)
    response = await complete(client, started)
    assert response.status == 400 and (await response.json())["error"]["code"] == "truncated_image"
    assert await object_keys(client.app[SERVICE].blobs) == []


async def test_completion_before_the_file_is_sent_is_409_and_the_upload_stays(client: TestClient) -> None:
    image = jpeg()
    started = await start(client, len(image))
    early = await complete(client, started)
    assert early.status == 409 and (await early.json())["error"]["code"] == "upload_incomplete"
    assert await send_form(started, image) in (200, 201, 204)
    assert (await complete(client, started)).status == 200


async def test_start_refuses_bad_requests(client: TestClient) -> None:
    limit = client.app[SERVICE].config.limits.max_upload_bytes
    for body, status in (
        ({"size": 0, "content_type": "image/jpeg"}, 400),
        ({"size": limit + 1, "content_type": "image/jpeg"}, 413),
        ({"size": 10, "content_type": "text/html"}, 415),
        ({"size": 10, "content_type": "image/jpeg", "properties": [1]}, 400),
        ({"size": 10, "content_type": "image/jpeg", "extra": 1}, 400),
    ):
        response = await client.post("/collections/direct/uploads", json=body)
        assert response.status == status, body
    assert (await client.app[SERVICE].meta.pending_uploads()) == []


async def test_a_form_is_bound_to_its_key_and_size(client: TestClient) -> None:
    image = jpeg()
    started = await start(client, len(image))
    tampered = dict(started, fields={**started["fields"], "key": "direct/" + "0" * 24 + ".jpg"})
    assert await send_form(tampered, image) == 403
    not_an_image_type = dict(started, fields={**started["fields"], "Content-Type": "text/plain"})
    assert await send_form(not_an_image_type, image, content_type="text/plain") == 403
    assert await object_keys(client.app[SERVICE].blobs) == []


async def test_abandoned_uploads_are_swept_and_never_orphans(client: TestClient) -> None:
    image = jpeg()
    started = await start(client, len(image))
    assert await send_form(started, image) in (200, 201, 204)
    service = client.app[SERVICE]
    report = await reconcile(service, grace=timedelta(0))
    assert (report.orphan_objects, report.pending_uploads, report.remaining) == (0, 1, 0)
    assert (await sweep(service, now=utcnow() + timedelta(hours=1))).uploads == 1
    assert await object_keys(service.blobs) == []
    assert (await complete(client, started)).status == 404


async def test_start_refuses_a_content_type_that_is_no_string(client: TestClient) -> None:
    response = await client.post("/collections/direct/uploads", json={"size": 10, "content_type": ["image/png"]})
    assert response.status == 415


async def test_the_signed_form_route_refuses_what_is_no_multipart_form(client: TestClient) -> None:
    """The filesystem backend's form route (a bucket takes the form itself on S3): a body that
    is no multipart form, or one without its boundary, is a clear 4xx, and nothing is stored."""
    image = jpeg()
    started = await start(client, len(image))
    if "/_uploads/" not in started["url"]:
        pytest.skip("the form goes to the bucket on this backend")
    async with aiohttp.ClientSession() as session:
        for content_type, status, code in (
            ("application/json", 415, "expected_multipart"),
            ("Multipart/Form-Data", 400, "invalid_multipart"),
            ("multipart/form-data; charset=utf-8", 400, "invalid_multipart"),
        ):
            async with session.post(started["url"], data=image, headers={"Content-Type": content_type}) as response:
                assert response.status == status, (content_type, await response.text())
                assert (await response.json())["error"]["code"] == code
    assert await object_keys(client.app[SERVICE].blobs) == []
    # The form route still takes the real form afterwards.
    assert await send_form(started, image) == 204
