"""Images the way cameras write them (issue 9): EXIF orientation, AVIF and HEIC/HEIF, with files
made here; recognition on its own and through the API on embedded and MinIO+FerretDB."""

from __future__ import annotations

import io

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from gateway.errors import Invalid, Unsupported
from gateway.images import ImageInspector, sniff
from tests.api.test_collections import fetch_object, upload


def camera_image(fmt: str, size: tuple[int, int] = (40, 20), orientation: int | None = None) -> bytes:
    image = Image.new("RGB", size, (30, 120, 200))
    for x in range(0, size[0], 3):
        image.putpixel((x, x % size[1]), (x % 256, 0, 255 - x % 256))
    options = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def inspect(data: bytes, chunk: int = 1000) -> ImageInspector:
    inspector = ImageInspector(max_pixels=10_000_000)
    for start in range(0, len(data), chunk):
        inspector.feed(data[start : start + chunk])
    inspector.finish()
    return inspector



@pytest.mark.embedded
@pytest.mark.parametrize("fmt", ["JPEG", "TIFF", "WEBP", "PNG", "AVIF", "HEIF"])
@pytest.mark.parametrize("orientation", [None, 1, 2, 3, 4, 5, 6, 7, 8])
def test_orientation_and_stored_size(fmt: str, orientation: int | None) -> None:
    info = inspect(camera_image(fmt, orientation=orientation)).info
    assert info is not None and info.format.name == fmt
    # The pixel size as stored, whatever the orientation.
    assert (info.width, info.height) == (40, 20)
    if fmt == "WEBP":
        assert info.orientation is None  # its EXIF chunk follows the pixels, which are not kept
    elif fmt in ("AVIF", "HEIF") and orientation == 1:
        assert info.orientation in (1, None)  # their encoders drop an upright tag
    else:
        assert info.orientation == orientation


@pytest.mark.embedded
@pytest.mark.parametrize("orientation", [None, 3, 5, 6])
def test_a_large_avif_has_its_orientation_from_the_first_bytes(orientation: int | None) -> None:
    """Identified while it streams (its `meta` box comes first), not once whole."""
    import random

    rng = random.Random(orientation)
    noise = Image.frombytes("RGB", (640, 480), rng.randbytes(640 * 480 * 3))
    options = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    noise.save(buffer, "AVIF", **options)
    data = buffer.getvalue()
    assert len(data) > 16 * 1024
    inspector = ImageInspector(max_pixels=10_000_000)
    inspector.feed(data[:4096])
    assert inspector.info is not None
    assert (inspector.info.width, inspector.info.height, inspector.info.orientation) == (640, 480, orientation)


@pytest.mark.embedded
@pytest.mark.parametrize(("fmt", "content_type"), [("AVIF", "image/avif"), ("HEIF", "image/heic")])
def test_avif_and_heif_are_recognised_by_their_bytes(fmt: str, content_type: str) -> None:
    data = camera_image(fmt)
    found = sniff(data[:32])
    assert found is not None and (found.name, found.content_type) == (fmt, content_type)


@pytest.mark.embedded
@pytest.mark.parametrize("fmt", ["AVIF", "HEIF"])
@pytest.mark.parametrize("keep", [0.5, 0.9, -1])
def test_truncated_avif_and_heif_are_refused(fmt: str, keep: float) -> None:
    data = camera_image(fmt, (64, 48))
    cut = data[: int(len(data) * keep)] if keep > 0 else data[:-1]
    with pytest.raises(Invalid):
        inspect(cut)


@pytest.mark.embedded
def test_an_ftyp_of_another_brand_is_unsupported() -> None:
    mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 64
    with pytest.raises(Unsupported):
        inspect(mp4)


@pytest.mark.parametrize(
    ("fmt", "content_type", "extension"), [("JPEG", "image/jpeg", "jpg"), ("AVIF", "image/avif", "avif"), ("HEIF", "image/heic", "heic")]
)
async def test_camera_uploads_report_the_displayed_size(client: TestClient, fmt: str, content_type: str, extension: str) -> None:
    turned = camera_image(fmt, (40, 20), orientation=6)
    doc = await upload(client, "camera", turned)
    assert (doc["width"], doc["height"], doc["pixel_width"], doc["pixel_height"], doc["orientation"]) == (20, 40, 40, 20, 6)
    assert (doc["content_type"], doc["path"].rsplit(".", 1)[1]) == (content_type, extension)
    body, headers = await fetch_object(client, doc)
    assert body == turned and headers["Content-Type"] == content_type
    upright = await upload(client, "camera", camera_image(fmt, (40, 20), orientation=3))
    assert (upright["width"], upright["height"], upright["orientation"]) == (40, 20, 3)
    plain = await upload(client, "camera", camera_image(fmt, (40, 20)))
    assert (plain["width"], plain["height"], plain["orientation"]) == (40, 20, None)
    stored = await (await client.get(f"/collections/camera/images/{doc['id']}")).json()
    assert (stored["width"], stored["pixel_width"], stored["orientation"]) == (20, 40, 6)


@pytest.mark.embedded
def test_a_broken_exif_block_leaves_the_orientation_unknown() -> None:
    good = camera_image("JPEG", orientation=6)
    start = good.index(b"Exif\x00\x00") + 6
    broken = good[:start] + b"XX" + good[start + 2 :]  # neither II nor MM: no TIFF header
    info = inspect(broken).info
    assert info is not None and (info.width, info.height, info.orientation) == (40, 20, None)


@pytest.mark.embedded
async def test_records_of_the_earlier_schema_gain_an_unknown_orientation(tmp_path: object) -> None:
    import sqlite3
    from pathlib import Path

    from gateway.metadata.sqlite import MIGRATIONS, SqliteMetadataStore

    path = Path(str(tmp_path)) / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.execute(
        "INSERT INTO images VALUES ('c', ?, 'a.png', '2024-01-01T00:00:00.000000Z', '2024-01-01T00:00:00.000000Z', 'image/png', "
        "'png', 4, 2, 10, ?, 'c/x.png', '{}', NULL, 1)",
        ("a" * 24, "0" * 64),
    )
    db.commit()
    db.close()
    async with SqliteMetadataStore(path) as store:
        record = await store.get("c", "a" * 24)
    assert (record.width, record.height, record.orientation) == (4, 2, None)
