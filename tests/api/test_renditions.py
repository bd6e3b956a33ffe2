"""Renditions over embedded and MinIO+FerretDB: every parameter, preset and refusal, fetched
through the redirect and decoded; caching, single-flight, deletion, reconcile and the queue limit.
Every source image is made here, with Pillow."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import zipfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import pillow_heif
import pytest
from aiohttp.test_utils import TestClient
from PIL import Image, ImageSequence
from yarl import URL

from gateway.app import create_app
from gateway.config import Config, RenditionsConfig
from gateway.keys import METRICS, RENDITIONS, SERVICE
from gateway.service.reconcile import reconcile
from gateway.renditions.service import RenditionService
from gateway.storage.base import rendition_prefix
from tests.faults import object_keys

Client = Callable[..., Awaitable[TestClient]]


def encoded(image: Image.Image, fmt: str, **save: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def quadrants(size: tuple[int, int] = (400, 300)) -> Image.Image:
    """Red top left, green top right, blue bottom left, white bottom right: where each corner
    lands shows crop, orientation and colour at once."""
    width, height = size
    image = Image.new("RGB", size, (255, 255, 255))
    image.paste((255, 0, 0), (0, 0, width // 2, height // 2))
    image.paste((0, 255, 0), (width // 2, 0, width, height // 2))
    image.paste((0, 0, 255), (0, height // 2, width // 2, height))
    return image


def near(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 24) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


@pytest.fixture
async def make(aiohttp_client: Any, app_config: Config) -> Client:
    """A client on this tier's backends with some `renditions` (or `limits`) settings changed."""

    async def build(limits: dict[str, Any] | None = None, **renditions: Any) -> TestClient:
        config = dataclasses.replace(app_config, renditions=dataclasses.replace(app_config.renditions, **renditions))
        if limits:
            config = dataclasses.replace(config, limits=dataclasses.replace(config.limits, **limits))
        return await aiohttp_client(create_app(config))

    return build


async def upload(client: TestClient, image: bytes, collection: str = "pics", filename: str = "photo.jpg") -> dict[str, Any]:
    data = aiohttp.FormData()
    data.add_field("image", image, filename=filename, content_type="application/octet-stream")
    response = await client.post(f"/collections/{collection}/images", data=data)
    assert response.status == 200, await response.text()
    return await response.json()


async def rendition(client: TestClient, doc: dict[str, Any], query: str, accept: str | None = None) -> tuple[aiohttp.ClientResponse, bytes, dict[str, str]]:
    """The redirect for `query`, then the object it points at, as a browser would follow it."""
    headers = {"Accept": accept} if accept is not None else {}
    response = await client.get(f"/collections/{doc['collection']}/images/{doc['id']}/image?{query}", headers=headers, allow_redirects=False)
    assert response.status == 302, await response.text()
    async with aiohttp.ClientSession() as session, session.get(response.headers["Location"]) as fetched:
        assert fetched.status == 200, await fetched.text()
        return response, await fetched.read(), dict(fetched.headers)


async def decoded(client: TestClient, doc: dict[str, Any], query: str, accept: str | None = None) -> tuple[Image.Image, str]:
    _, body, headers = await rendition(client, doc, query, accept)
    image = Image.open(io.BytesIO(body))
    image.load()
    return image, headers["Content-Type"]


def rendered(client: TestClient) -> float:
    return sum(s.value for metric in client.server.app[METRICS].renditions_rendered.collect() for s in metric.samples if s.name.endswith("_total"))


def cache_hits(client: TestClient) -> float:
    return client.server.app[METRICS].rendition_cache_hits._value.get()


async def rendition_keys(client: TestClient, doc: dict[str, Any]) -> list[str]:
    return await object_keys(client.server.app[SERVICE].blobs, rendition_prefix(doc["collection"], doc["id"]))


# --- sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "size"),
    [
        ("width=200", (200, 150)),
        ("w=200", (200, 150)),
        ("height=75", (100, 75)),
        ("h=75", (100, 75)),
        ("width=100&height=100", (100, 100)),  # cover is the default with both sides
        ("width=100&height=100&resize=cover", (100, 100)),
        ("width=100&height=100&resize=contain", (100, 75)),
        ("width=100&height=100&resize=fill", (100, 100)),
        ("format=png", (400, 300)),  # a conversion alone keeps the size
    ],
)
async def test_sizes(client: TestClient, query: str, size: tuple[int, int]) -> None:
    doc = await upload(client, encoded(quadrants(), "PNG"), filename="q.png")
    image, _ = await decoded(client, doc, query + ("&format=png" if "format" not in query else ""))
    assert image.size == size


async def test_cover_crops_the_centre_and_fill_stretches(client: TestClient) -> None:
    doc = await upload(client, encoded(quadrants((400, 200)), "PNG"), filename="q.png")
    cover, _ = await decoded(client, doc, "width=100&height=100&resize=cover&format=png")
    # The centre square of a 2:1 image: its corners are still the four colours.
    assert near(cover.convert("RGB").getpixel((2, 2)), (255, 0, 0))
    assert near(cover.convert("RGB").getpixel((97, 97)), (255, 255, 255))
    fill, _ = await decoded(client, doc, "width=100&height=100&resize=fill&format=png")
    # Stretched, not cropped: the quadrants meet in the middle.
    assert near(fill.convert("RGB").getpixel((48, 48)), (255, 0, 0)) and near(fill.convert("RGB").getpixel((52, 48)), (0, 255, 0))


async def test_never_enlarged_unless_asked(client: TestClient) -> None:
    doc = await upload(client, encoded(quadrants((40, 30)), "PNG"), filename="small.png")
    for query, size in (
        ("width=400&format=png", (40, 30)),
        ("width=400&enlarge=true&format=png", (400, 300)),
        ("width=100&height=100&resize=fill&format=png", (40, 30)),
        ("width=100&height=100&resize=fill&enlarge=true&format=png", (100, 100)),
    ):
        image, _ = await decoded(client, doc, query)
        assert image.size == size, query


# --- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "pillow", "content_type"),
    [("jpeg", "JPEG", "image/jpeg"), ("png", "PNG", "image/png"), ("webp", "WEBP", "image/webp"), ("avif", "AVIF", "image/avif"), ("origin", "PNG", "image/png")],
)
async def test_formats(client: TestClient, fmt: str, pillow: str, content_type: str) -> None:
    doc = await upload(client, encoded(quadrants(), "PNG"), filename="q.png")
    response, body, headers = await rendition(client, doc, f"width=200&format={fmt}")
    assert headers["Content-Type"] == content_type
    assert "Vary" not in response.headers
    image = Image.open(io.BytesIO(body))
    assert (image.format, image.size) == (pillow, (200, 150))
    assert near(image.convert("RGB").getpixel((20, 20)), (255, 0, 0), 40)
    assert near(image.convert("RGB").getpixel((180, 130)), (255, 255, 255), 40)


@pytest.mark.parametrize(
    ("accept", "pillow"),
    [("image/avif,image/webp,*/*", "AVIF"), ("image/webp,*/*;q=0.8", "WEBP"), ("image/avif;q=0,image/webp", "WEBP"), ("*/*", "JPEG"), (None, "JPEG")],
)
async def test_auto_format_follows_accept(client: TestClient, accept: str | None, pillow: str) -> None:
    doc = await upload(client, encoded(quadrants(), "JPEG"))
    response, body, _ = await rendition(client, doc, "width=100&format=auto", accept)
    assert response.headers["Vary"] == "Accept"
    assert Image.open(io.BytesIO(body)).format == pillow


async def test_quality(client: TestClient) -> None:
    noisy = Image.effect_noise((400, 300), 80).convert("RGB")
    doc = await upload(client, encoded(noisy, "JPEG", quality=95))
    _, low, _ = await rendition(client, doc, "width=300&format=jpeg&quality=20")
    _, high, _ = await rendition(client, doc, "width=300&format=jpeg&quality=95")
    _, default, _ = await rendition(client, doc, "width=300&format=jpeg")
    assert len(low) < len(default) < len(high)
    assert len(await rendition_keys(client, doc)) == 3


# --- presets and bounds -------------------------------------------------------------------------


async def test_presets_and_thumbnail_url(client: TestClient) -> None:
    doc = await upload(client, encoded(quadrants((2000, 1000)), "JPEG"))
    thumb, content_type = await decoded(client, doc, "preset=thumb")
    assert (thumb.size, thumb.format, content_type) == ((256, 256), "WEBP", "image/webp")
    preview, _ = await decoded(client, doc, "preset=preview")
    assert (preview.size, preview.format) == ((1280, 640), "WEBP")
    # The document links the thumbnail, and it is the same stored object.
    assert doc["thumbnail_url"].endswith(f"/collections/pics/images/{doc['id']}/image?preset=thumb")
    before = rendered(client)
    response = await client.get(URL(doc["thumbnail_url"]).path_qs, allow_redirects=False)
    assert response.status == 302 and rendered(client) == before
    _, _, headers = await rendition(client, doc, "width=256&height=256&format=webp")
    assert rendered(client) == before  # the preset's spec is the parameters' spec
    # A preset's fields can be overridden while free sizes are allowed.
    smaller, _ = await decoded(client, doc, "preset=thumb&width=64&height=64&format=png")
    assert (smaller.size, smaller.format) == ((64, 64), "PNG")


async def test_v1_route_and_document(client: TestClient) -> None:
    import base64

    response = await client.post("/v1/images", json={"data": base64.b64encode(encoded(quadrants(), "PNG")).decode(), "filename": "q.png"})
    doc = await response.json()
    assert doc["thumbnail_url"].endswith(f"/collections/images/images/{doc['id']}/image?preset=thumb")
    response = await client.get(f"/v1/images/{doc['id']}/image?w=100&format=jpeg", allow_redirects=False)
    assert response.status == 302
    async with aiohttp.ClientSession() as session, session.get(response.headers["Location"]) as fetched:
        image = Image.open(io.BytesIO(await fetched.read()))
    assert (image.format, image.size) == ("JPEG", (100, 75))


async def test_presets_only(make: Client) -> None:
    client = await make(free_sizes=False)
    doc = await upload(client, encoded(quadrants(), "JPEG"))
    thumb, _ = await decoded(client, doc, "preset=thumb")
    assert thumb.size == (256, 256)
    for query, named in (("width=100", "width"), ("preset=thumb&format=png", "format"), ("quality=50", "quality")):
        response = await client.get(f"/collections/pics/images/{doc['id']}/image?{query}", allow_redirects=False)
        assert response.status == 400
        error = (await response.json())["error"]
        assert error["code"] == "presets_only" and error["message"].startswith(named)
    # The original is still served as it is.
    response = await client.get(f"/collections/pics/images/{doc['id']}/image", allow_redirects=False)
    assert response.status == 302


async def test_max_dimension(make: Client) -> None:
    client = await make(max_dimension=300)
    doc = await upload(client, encoded(quadrants((800, 600)), "JPEG"))
    image, _ = await decoded(client, doc, "width=300")
    assert image.size == (300, 225)
    response = await client.get(f"/collections/pics/images/{doc['id']}/image?width=301", allow_redirects=False)
    assert response.status == 400 and (await response.json())["error"]["message"].startswith("width")
    # A conversion alone is bounded by it too.
    image, _ = await decoded(client, doc, "format=png")
    assert image.size == (300, 225)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("width=0", "width"),
        ("width=2501", "width"),
        ("width=abc", "width"),
        ("width=-5", "width"),
        ("width=1.5", "width"),
        ("width=10&width=20", "width"),
        ("width=10&w=20", "width"),
        ("w=0", "w"),
        ("height=99999999", "height"),
        ("h=x", "h"),
        ("width=10&resize=crop", "resize"),
        ("format=gif", "format"),
        ("format=tiff", "format"),
        ("quality=19", "quality"),
        ("quality=101", "quality"),
        ("quality=high", "quality"),
        ("enlarge=maybe", "enlarge"),
        ("preset=huge", "preset"),
        ("width=10&crop=1", "unknown query parameter 'crop'"),
        ("width=10&%24where=1", "unknown query parameter '$where'"),
    ],
)
async def test_refusals_name_the_parameter(client: TestClient, query: str, named: str) -> None:
    doc = await upload(client, encoded(quadrants(), "JPEG"))
    response = await client.get(f"/collections/pics/images/{doc['id']}/image?{query}", allow_redirects=False)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["message"].startswith(named), error
    assert await rendition_keys(client, doc) == []  # a refused request stores nothing


async def test_missing_image_is_404(client: TestClient) -> None:
    response = await client.get("/collections/pics/images/0123456789abcdef01234567/image?width=10")
    assert response.status == 404


# --- caching, single flight, the queue -----------------------------------------------------------


async def test_second_request_does_not_render(client: TestClient) -> None:
    doc = await upload(client, encoded(quadrants(), "JPEG"))
    first, _ = await decoded(client, doc, "width=120&format=webp")
    assert (rendered(client), cache_hits(client)) == (1, 0)
    second, _ = await decoded(client, doc, "width=120&format=webp")
    assert (rendered(client), cache_hits(client)) == (1, 1)
    assert second.size == first.size == (120, 90)
    assert len(await rendition_keys(client, doc)) == 1
    metrics = await (await client.get("/metrics")).text()
    for name in ("gateway_renditions_rendered_total", "gateway_rendition_cache_hits_total", "gateway_render_duration_seconds_count", "gateway_render_queue_depth"):
        assert name in metrics


async def test_warm_request_does_not_list_the_store(client: TestClient) -> None:
    doc = await upload(client, encoded(quadrants(), "JPEG"))
    await rendition(client, doc, "preset=thumb")
    blobs = client.server.app[SERVICE].blobs
    listed: list[str] = []
    real_list = blobs.list

    def spy(prefix: str) -> Any:
        listed.append(prefix)
        return real_list(prefix)

    blobs.list = spy
    try:
        await rendition(client, doc, "preset=thumb")
        assert listed == [] and cache_hits(client) == 1
        # A delete forgets what this process knew, so nothing stale is served later.
        assert (await client.delete(f"/collections/pics/images/{doc['id']}")).status == 200
    finally:
        del blobs.list
    assert not client.server.app[RENDITIONS]._known


async def test_concurrent_first_requests_render_once(client: TestClient) -> None:
    doc = await upload(client, encoded(quadrants(), "JPEG"))
    results = await asyncio.gather(*(decoded(client, doc, "width=64&format=png") for _ in range(6)))
    assert {image.size for image, _ in results} == {(64, 48)}
    assert rendered(client) == 1
    assert len(await rendition_keys(client, doc)) == 1


async def test_a_racing_replica_stored_it_first(make: Client, app_config: Config) -> None:
    """Two processes on one store: the second one's put meets the first one's object (Conflict)
    and serves it."""
    client = await make()
    doc = await upload(client, encoded(quadrants(), "JPEG"))
    # The other replica has not looked yet when this one stores: it will render and find the key taken.
    other = RenditionService(client.server.app[SERVICE], app_config)
    real_exists = other._exists

    async def not_yet(key: str) -> bool:
        return False

    other._exists = not_yet  # type: ignore[method-assign]
    try:
        _, body, _ = await rendition(client, doc, "width=50&format=png")
        url, _ = await other.url("pics", doc["id"], service_wanted("width=50&format=png"))
        assert await real_exists(_key(doc, "w50-contain.png"))
    finally:
        other.close()
    async with aiohttp.ClientSession() as session, session.get(client.make_url(url) if url.startswith("/") else url) as fetched:
        assert await fetched.read() == body
    assert len(await rendition_keys(client, doc)) == 1


def service_wanted(query: str) -> Any:
    from multidict import MultiDict
    from urllib.parse import parse_qsl

    from gateway.renditions.spec import parse

    return parse(MultiDict(parse_qsl(query)), RenditionsConfig())


def _key(doc: dict[str, Any], name: str) -> str:
    return rendition_prefix(doc["collection"], doc["id"]) + name


async def test_queue_limit_answers_503_with_retry_after(make: Client) -> None:
    client = await make(workers=1, queue_size=1)
    doc = await upload(client, encoded(quadrants(), "JPEG"))
    service: RenditionService = client.server.app[RENDITIONS]
    release = asyncio.Event()
    reading = asyncio.Event()
    real_source = service._source

    async def held(record: Any) -> bytes:
        reading.set()
        await release.wait()
        return await real_source(record)

    service._source = held  # type: ignore[method-assign]
    running = asyncio.create_task(decoded(client, doc, "width=40&format=png"))
    await reading.wait()  # the one worker is busy
    waiting = asyncio.create_task(decoded(client, doc, "width=20&format=png"))
    while service.renderer.queued < 1:  # the second waits in the queue
        await asyncio.sleep(0)
    refused = await client.get(f"/collections/pics/images/{doc['id']}/image?width=80&format=png", allow_redirects=False)
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "1"
    assert (await refused.json())["error"]["code"] == "render_queue_full"
    release.set()
    assert [(await task)[0].size for task in (running, waiting)] == [(40, 30), (20, 15)]
    image, _ = await decoded(client, doc, "width=80&format=png")  # room again
    assert image.size == (80, 60)


async def test_source_over_the_pixel_limit_is_never_decoded(make: Client) -> None:
    client = await make(limits={"max_image_pixels": 10_000})
    small = await upload(client, encoded(quadrants((100, 100)), "PNG"), filename="ok.png")
    service: RenditionService = client.server.app[RENDITIONS]
    # A record from before the limit was lowered: made directly, as an upload would be refused.
    image_service = client.server.app[SERVICE]
    config = image_service.config
    image_service.config = dataclasses.replace(config, limits=dataclasses.replace(config.limits, max_image_pixels=10**8))
    large = await image_service.upload_bytes("pics", encoded(quadrants((200, 200)), "PNG"), "big.png", {})
    image_service.config = config
    reads = []
    real_source = service._source

    async def spy(record: Any) -> bytes:
        reads.append(record.id)
        return await real_source(record)

    service._source = spy  # type: ignore[method-assign]
    response = await client.get(f"/collections/pics/images/{large.id}/image?width=10", allow_redirects=False)
    assert response.status == 413 and (await response.json())["error"]["code"] == "too_many_pixels"
    assert reads == []
    image, _ = await decoded(client, small, "width=10&format=png")
    assert image.size == (10, 10) and reads == [small["id"]]


# --- deletion, reconcile, export ----------------------------------------------------------------


async def test_deleted_with_the_image(client: TestClient) -> None:
    doc = await upload(client, encoded(quadrants(), "JPEG"))
    kept = await upload(client, encoded(quadrants(), "JPEG"))
    for query in ("preset=thumb", "width=50&format=png"):
        await rendition(client, doc, query)
    await rendition(client, kept, "preset=thumb")
    assert len(await rendition_keys(client, doc)) == 2
    response = await client.delete(f"/collections/pics/images/{doc['id']}")
    assert response.status == 200
    assert await rendition_keys(client, doc) == []
    assert len(await rendition_keys(client, kept)) == 1
    # Also through the v1 API.
    response = await client.post("/v1/images", json={"data": __import__("base64").b64encode(encoded(quadrants(), "PNG")).decode()})
    v1 = await response.json()
    await rendition(client, v1, "preset=thumb")
    assert (await client.delete(f"/v1/images/{v1['id']}")).status == 200
    assert await rendition_keys(client, v1) == []


async def test_deleted_with_the_collection(client: TestClient) -> None:
    doc = await upload(client, encoded(quadrants(), "JPEG"), collection="dropme")
    await rendition(client, doc, "preset=thumb")
    response = await client.delete("/collections/dropme")
    assert response.status == 200
    assert (await response.json())["deleted"] == {"documents": 1, "objects": 2}
    assert await object_keys(client.server.app[SERVICE].blobs, "dropme/") == []


async def test_reconcile_keeps_renditions_of_images_and_removes_the_rest(client: TestClient) -> None:
    service = client.server.app[SERVICE]
    kept = await upload(client, encoded(quadrants(), "JPEG"), collection="rec")
    gone = await upload(client, encoded(quadrants(), "JPEG"), collection="rec")
    for doc in (kept, gone):
        await rendition(client, doc, "preset=thumb")
        await rendition(client, doc, "width=40&format=png")
    # A record deleted by a path that left its renditions (as a failed delete would).
    await service.meta.delete("rec", gone["id"])
    await service.blobs.delete(gone["path"])
    summary = await reconcile(service, grace=timedelta(0))
    assert (summary.matched, summary.renditions, summary.orphan_objects, summary.missing_objects) == (1, 2, 2, 0)
    assert summary.remaining == 2
    summary = await reconcile(service, grace=timedelta(0), fix=True)
    assert (summary.orphan_objects, summary.fixed) == (2, 2)
    assert await rendition_keys(client, gone) == []
    assert len(await rendition_keys(client, kept)) == 2
    summary = await reconcile(service, grace=timedelta(0))
    assert (summary.renditions, summary.remaining) == (2, 0)


async def test_export_leaves_renditions_out(client: TestClient) -> None:
    doc = await upload(client, encoded(quadrants(), "JPEG"), collection="exp")
    await rendition(client, doc, "preset=thumb")
    response = await client.get("/collections/exp/export")
    with zipfile.ZipFile(io.BytesIO(await response.read())) as opened:
        names = set(opened.namelist())
        lines = opened.read("metadata.jsonl").splitlines()
    assert names == {doc["path"].split("/")[1], "metadata.jsonl", "mongodb_data.json"}
    assert [json.loads(line)["_id"] for line in lines] == [doc["id"]]


# --- sources ------------------------------------------------------------------------------------


async def test_exif_orientation_applied(client: TestClient) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: displayed rotated 90° clockwise
    doc = await upload(client, encoded(quadrants((400, 200)), "JPEG", exif=exif.tobytes(), quality=95))
    image, _ = await decoded(client, doc, "width=100&format=png")
    assert image.size == (100, 200)
    rgb = image.convert("RGB")
    # Rotated clockwise: the stored bottom-left (blue) is now top-left, top-left (red) top-right.
    assert near(rgb.getpixel((10, 10)), (0, 0, 255), 40) and near(rgb.getpixel((90, 10)), (255, 0, 0), 40)
    assert "exif" not in image.info or not Image.open(io.BytesIO(encoded(image, "PNG"))).getexif().get(0x0112)


@pytest.mark.parametrize("container", ["jpeg", "png", "heic"])
async def test_colour_profile_converted_to_srgb(client: TestClient, container: str) -> None:
    import pyvips

    red = (pyvips.Image.black(200, 100) + [255, 0, 0]).cast("uchar").copy(interpretation="srgb")
    # Display P3 values of sRGB red, tagged with the P3 profile: shown as-is they would be orange.
    p3 = red.icc_transform("p3", input_profile="srgb")
    assert near(tuple(int(v) for v in p3(10, 10)), (234, 51, 34), 3)
    if container == "heic":
        tagged = Image.frombytes("RGB", (200, 100), p3.write_to_memory())
        buffer = io.BytesIO()
        pillow_heif.from_pillow(tagged).save(buffer, quality=95, icc_profile=p3.get("icc-profile-data"))
        data = buffer.getvalue()
    else:
        data = p3.jpegsave_buffer(Q=95) if container == "jpeg" else p3.pngsave_buffer()
    doc = await upload(client, data, filename=f"p3.{container}")
    image, _ = await decoded(client, doc, "width=50&format=png")
    assert near(image.convert("RGB").getpixel((25, 12)), (255, 0, 0), 8)
    assert "icc_profile" not in image.info  # converted, then dropped: sRGB is the web's default


async def test_cmyk_jpeg(client: TestClient) -> None:
    cmyk = Image.new("CMYK", (300, 200), (0, 255, 255, 0))  # full magenta and yellow: red
    doc = await upload(client, encoded(cmyk, "JPEG", quality=95))
    image, _ = await decoded(client, doc, "width=60&format=jpeg")
    assert image.mode == "RGB" and image.size == (60, 40)
    red, green, blue = image.getpixel((30, 20))
    assert red > 180 and green < 80 and blue < 80


async def test_sixteen_bit_png(client: TestClient) -> None:
    grey = Image.new("I;16", (200, 100), 40000)
    colour = Image.merge("RGB", [Image.new("L", (200, 100), v) for v in (250, 120, 10)])
    for source, expected in ((grey, (155, 155, 155)), (colour, (250, 120, 10))):
        data = encoded(source, "PNG") if source.mode == "I;16" else _rgb48(colour)
        doc = await upload(client, data, filename="deep.png")
        image, _ = await decoded(client, doc, "width=50&format=webp")
        assert image.size == (50, 25)
        assert near(image.convert("RGB").getpixel((25, 12)), expected, 6)


def _rgb48(image: Image.Image) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow writes none), via libvips."""
    import pyvips

    vips = pyvips.Image.new_from_memory(image.tobytes(), image.width, image.height, 3, "uchar")
    return (vips.cast("ushort") * 257).cast("ushort").copy(interpretation="rgb16").pngsave_buffer()


async def test_palette_png(client: TestClient) -> None:
    palette = quadrants().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    doc = await upload(client, encoded(palette, "PNG"), filename="p.png")
    image, _ = await decoded(client, doc, "width=200&format=jpeg")
    assert near(image.getpixel((20, 20)), (255, 0, 0), 30) and near(image.getpixel((180, 130)), (255, 255, 255), 30)


async def test_transparent_png_flattened_for_jpeg_and_kept_for_webp(client: TestClient) -> None:
    source = Image.new("RGBA", (200, 100), (255, 0, 0, 0))
    source.paste((0, 0, 255, 255), (100, 0, 200, 100))
    doc = await upload(client, encoded(source, "PNG"), filename="alpha.png")
    jpeg, _ = await decoded(client, doc, "width=100&format=jpeg")
    assert jpeg.mode == "RGB"
    assert near(jpeg.getpixel((20, 25)), (255, 255, 255), 12)  # transparent on white, not black
    assert near(jpeg.getpixel((80, 25)), (0, 0, 255), 30)
    webp, _ = await decoded(client, doc, "width=100&format=webp")
    assert webp.mode == "RGBA"
    assert webp.getpixel((20, 25))[3] == 0 and webp.getpixel((80, 25))[3] == 255


def _animation() -> bytes:
    frames = [quadrants((300, 200)).point(lambda v, k=k: v if k == 0 else 255 - v) for k in range(2)] + [Image.new("RGB", (300, 200), (0, 200, 0))]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)


@pytest.mark.parametrize("query", ["width=150&format=webp", "width=100&height=100&format=webp", "width=100&height=50&resize=fill&format=webp", "width=120&format=origin"])
async def test_animated_gif_stays_animated(client: TestClient, query: str) -> None:
    doc = await upload(client, _animation(), filename="anim.gif")
    image, _ = await decoded(client, doc, query)
    sizes = {frame.size for frame in ImageSequence.Iterator(image)}
    expected = {"width=150&format=webp": (150, 100), "width=100&height=100&format=webp": (100, 100), "width=100&height=50&resize=fill&format=webp": (100, 50), "width=120&format=origin": (120, 80)}[query]
    assert image.n_frames == 3 and sizes == {expected}
    image.seek(2)
    assert near(image.convert("RGB").getpixel((expected[0] // 2, expected[1] // 2)), (0, 200, 0), 40)


async def test_animated_gif_to_jpeg_is_the_first_frame(client: TestClient) -> None:
    doc = await upload(client, _animation(), filename="anim.gif")
    image, _ = await decoded(client, doc, "width=150&format=jpeg")
    assert (image.format, image.size) == ("JPEG", (150, 100))
    assert near(image.getpixel((10, 10)), (255, 0, 0), 40)


async def test_avif_and_heic_sources(client: TestClient) -> None:
    avif = encoded(quadrants(), "AVIF", quality=90)
    heif = pillow_heif.from_pillow(quadrants())
    buffer = io.BytesIO()
    heif.save(buffer, quality=90)
    for data, name, fmt in ((avif, "q.avif", "avif"), (buffer.getvalue(), "q.heic", "heif")):
        doc = await upload(client, data, filename=name)
        assert (doc["format"], doc["width"], doc["height"]) == (fmt, 400, 300)
        for query, pillow in (("width=100&format=jpeg", "JPEG"), ("width=100&format=webp", "WEBP"), ("width=100", "AVIF" if fmt == "avif" else "JPEG")):
            image, _ = await decoded(client, doc, query)
            assert (image.format, image.size) == (pillow, (100, 75)), (name, query)
            assert near(image.convert("RGB").getpixel((10, 10)), (255, 0, 0), 40)


# --- failures -----------------------------------------------------------------------------------


async def test_image_deleted_while_rendering_leaves_no_rendition(client: TestClient) -> None:
    doc = await upload(client, encoded(quadrants(), "JPEG"))
    service: RenditionService = client.server.app[RENDITIONS]
    real_source = service._source

    async def deleted_meanwhile(record: Any) -> bytes:
        data = await real_source(record)
        await client.server.app[SERVICE].delete(record.collection, record.id)
        return data

    service._source = deleted_meanwhile  # type: ignore[method-assign]
    response = await client.get(f"/collections/pics/images/{doc['id']}/image?width=50", allow_redirects=False)
    assert response.status == 404
    assert await rendition_keys(client, doc) == []


async def test_failed_store_answers_503_and_keeps_nothing(client: TestClient) -> None:
    from gateway.errors import Unavailable

    doc = await upload(client, encoded(quadrants(), "JPEG"))
    async def failing(key: str, chunks: Any, **kwargs: Any) -> None:
        raise Unavailable("the object store is down", code="storage_unavailable")

    client.server.app[SERVICE].blobs.put = failing  # type: ignore[method-assign]
    try:
        response = await client.get(f"/collections/pics/images/{doc['id']}/image?width=50", allow_redirects=False)
    finally:
        del client.server.app[SERVICE].blobs.put
    assert response.status == 503
    assert await rendition_keys(client, doc) == []
    image, _ = await decoded(client, doc, "width=50")  # made once the store answers again
    assert image.width == 50 and image.height in (37, 38)
