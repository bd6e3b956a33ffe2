"""Size and pixel limits, enforced while streaming, on embedded and MinIO+FerretDB."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import aiohttp
import pytest

from gateway.app import create_app
from gateway.config import Config
from tests.helpers import noisy_jpeg, png, png_header_claiming


@pytest.fixture
async def limited(aiohttp_client: Any, app_config: Config) -> Any:
    limits = dataclasses.replace(app_config.limits, max_upload_bytes=20_000, max_image_pixels=1_000_000)
    return await aiohttp_client(create_app(dataclasses.replace(app_config, limits=limits)))


async def nothing_stored(client: Any) -> None:
    assert await (await client.get("/collections")).json() == []


async def test_multipart_over_the_limit_is_413_mid_stream(limited: Any) -> None:
    big = noisy_jpeg((200, 200))
    assert len(big) > 20_000
    data = aiohttp.FormData()
    data.add_field("image", big, filename="big.jpg", content_type="image/jpeg")
    response = await limited.post("/collections/c/images", data=data)
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "upload_too_large"
    await nothing_stored(limited)


async def test_base64_body_over_the_limit_is_413_before_decoding(limited: Any) -> None:
    big = noisy_jpeg((200, 200))
    response = await limited.post("/v1/images", json={"data": base64.b64encode(big).decode()})
    assert response.status == 413
    assert (await response.json())["error"]["code"] in ("body_too_large", "upload_too_large")
    await nothing_stored(limited)


@pytest.mark.parametrize("claimed", [(1001, 1000), (100_000, 100_000), (2**31 - 1, 2**31 - 1)])
async def test_pixel_bombs_are_413(limited: Any, claimed: tuple[int, int]) -> None:
    data = aiohttp.FormData()
    data.add_field("image", png_header_claiming(*claimed), filename="bomb.png", content_type="image/png")
    response = await limited.post("/collections/c/images", data=data)
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "too_many_pixels"
    await nothing_stored(limited)


async def test_just_under_the_limits_is_accepted(limited: Any) -> None:
    data = aiohttp.FormData()
    data.add_field("image", png((1000, 1000)), filename="ok.png", content_type="image/png")
    response = await limited.post("/collections/c/images", data=data)
    assert response.status == 200, await response.text()


async def test_multipart_without_image_and_not_multipart(limited: Any) -> None:
    data = aiohttp.FormData()
    data.add_field("ai_prediction", "OK")
    data.add_field("other", b"x", filename="x.bin")
    response = await limited.post("/collections/c/images", data=data)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "unexpected_file"
    response = await limited.post("/collections/c/images", data={"ai_prediction": "OK"})
    assert response.status == 415  # urlencoded form, no file at all
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("ai_prediction", "OK")
    response = await limited.post("/collections/c/images", data=form)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "missing_image"
    await nothing_stored(limited)


async def test_stalled_body_is_408_and_leaves_nothing(aiohttp_client: Any, app_config: Config) -> None:
    """A client that stops sending mid-upload (without closing) is answered 408 once the body
    has been idle for `body_idle_timeout_seconds`, and the half-written object is removed."""
    import asyncio
    import json

    from gateway.keys import SERVICE
    from tests.faults import assert_invariants, send_half_an_upload

    limits = dataclasses.replace(app_config.limits, body_idle_timeout_seconds=0.3)
    client = await aiohttp_client(create_app(dataclasses.replace(app_config, limits=limits)))
    reader, writer = await send_half_an_upload(client.server.host, client.server.port, "/collections/stall/images", noisy_jpeg((300, 300)))
    answer = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:200]
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "body_timeout"
    assert await assert_invariants(client.server.app[SERVICE]) == ([], [])
