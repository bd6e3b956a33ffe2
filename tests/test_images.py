"""ImageInspector: the real format and dimensions from streamed bytes, truncation, bombs."""

from __future__ import annotations

import functools
import io
import random
import struct
from collections.abc import Iterator

import pytest
from PIL import Image

from gateway.errors import GatewayError, Invalid, TooLarge, Unsupported
from gateway.images import ImageInfo, ImageInspector
from tests.helpers import PILLOW_FORMATS, make_image, png_header_claiming

FORMATS = list(PILLOW_FORMATS)  # jpeg png gif webp tiff bmp
LIMIT = 89_478_485
CHUNKINGS = [pytest.param(None, id="whole"), 1, 7, 64 * 1024]


def chunks(data: bytes, size: int | None) -> Iterator[bytes]:
    if size is None:
        yield data
        return
    for start in range(0, len(data), size):
        yield data[start : start + size]


def inspect(data: bytes, chunk: int | None = None, max_pixels: int = LIMIT) -> ImageInfo:
    inspector = ImageInspector(max_pixels)
    for piece in chunks(data, chunk):
        inspector.feed(piece)
    info = inspector.finish()
    assert inspector.size == len(data)
    return info


@functools.cache
def noisy(fmt: str, size: tuple[int, int] = (203, 151), **save: object) -> bytes:
    """An image that does not compress, so its header and its end are far apart (> 4 KiB)."""
    rng = random.Random(f"{fmt}{size}")
    image = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    image.save(buffer, PILLOW_FORMATS[fmt], **save)
    return buffer.getvalue()


def sample(fmt: str, kind: str) -> tuple[bytes, tuple[int, int]]:
    return (make_image(fmt), (32, 24)) if kind == "small" else (noisy(fmt), (203, 151))


# --- every format, however it is chunked ---------------------------------------------------------


@pytest.mark.parametrize("chunk", CHUNKINGS)
@pytest.mark.parametrize("kind", ["small", "noisy"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_identifies_every_format_however_chunked(fmt: str, kind: str, chunk: int | None) -> None:
    data, size = sample(fmt, kind)
    info = inspect(data, chunk)
    assert info.format.name == PILLOW_FORMATS[fmt]
    assert (info.width, info.height) == size
    assert info.format.content_type == f"image/{fmt}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_identifies_from_the_first_4_kib_while_streaming(fmt: str) -> None:
    data = noisy(fmt)
    assert len(data) > 16 * 1024
    inspector = ImageInspector(LIMIT)
    for piece in chunks(data[:4096], 512):
        inspector.feed(piece)
    # Known before the rest arrives, so the upload need not be buffered.
    assert inspector.info is not None
    assert (inspector.info.format.name, inspector.info.width, inspector.info.height) == (PILLOW_FORMATS[fmt], 203, 151)


@pytest.mark.parametrize(
    "save",
    [
        pytest.param({}, id="lossy-VP8"),
        pytest.param({"lossless": True}, id="lossless-VP8L"),
        pytest.param({"exif": b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00"}, id="extended-VP8X"),
    ],
)
@pytest.mark.parametrize("size", [(203, 151), (7, 1201)])
def test_webp_dimensions_from_every_kind_of_first_chunk(save: dict[str, object], size: tuple[int, int]) -> None:
    data = noisy("webp", size, **save)
    inspector = ImageInspector(LIMIT)
    inspector.feed(data[:4096])
    assert inspector.info is not None and (inspector.info.width, inspector.info.height) == size
    for piece in chunks(data[4096:], 4096):
        inspector.feed(piece)
    assert inspector.finish() == inspector.info


def test_webp_larger_than_the_header_buffer_is_accepted() -> None:
    # Pillow opens a WebP only whole; the inspector used to buffer it and give up at 16 MiB.
    rng = random.Random(7)
    image = Image.frombytes("RGB", (2400, 2400), rng.randbytes(2400 * 2400 * 3))
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", lossless=True, method=0)
    data = buffer.getvalue()
    assert len(data) > 16 * 1024 * 1024
    info = inspect(data, 64 * 1024)
    assert (info.format.name, info.width, info.height) == ("WEBP", 2400, 2400)


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_jpeg_with_a_large_icc_profile_still_identifies(chunk: int | None) -> None:
    icc = random.Random(1).randbytes(200_000)
    data = make_image("jpeg", icc_profile=icc)
    assert len(data) > 200_000
    info = inspect(data, chunk)
    assert (info.format.name, info.width, info.height) == ("JPEG", 32, 24)


# --- truncated -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["half", "nine-tenths", "len-1"])
@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("kind", ["small", "noisy"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_image_is_refused(fmt: str, kind: str, chunk: int | None, cut: str) -> None:
    data, _ = sample(fmt, kind)
    end = {"half": len(data) // 2, "nine-tenths": len(data) * 9 // 10, "len-1": len(data) - 1}[cut]
    with pytest.raises(Invalid) as caught:
        inspect(data[:end], chunk)
    assert caught.value.code in ("truncated_image", "invalid_image")


@pytest.mark.parametrize("fmt", FORMATS)
def test_cut_inside_the_header_is_refused(fmt: str) -> None:
    data = make_image(fmt)
    for end in (1, 8, 17, 40):
        with pytest.raises((Invalid, Unsupported)):
            inspect(data[:end])


# --- not images ----------------------------------------------------------------------------------

NOT_IMAGES = {
    "text": b"hello, this is plain text and not an image at all\n",
    "html": b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>',
    "svg-xml": b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
    "json": b'{"data": "iVBORw0KGgo="}',
    "random-10": random.Random(3).randbytes(10),
    "png-signature-only": b"\x89PNG\r\n\x1a\n",
    "riff-not-webp": b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + b"\x00" * 24,
}


@pytest.mark.parametrize("name", list(NOT_IMAGES))
def test_non_image_is_refused(name: str) -> None:
    with pytest.raises((Unsupported, Invalid)):
        inspect(NOT_IMAGES[name])


def test_empty_body_is_refused_as_empty() -> None:
    with pytest.raises(Invalid) as caught:
        inspect(b"")
    assert caught.value.code == "empty_image"


@pytest.mark.parametrize("name", ["text", "html", "svg", "pdf"])
def test_long_non_image_stream_is_refused_on_its_first_chunk(name: str) -> None:
    inspector = ImageInspector(LIMIT)
    stream = chunks(NOT_IMAGES[name] * 50_000, 64 * 1024)
    with pytest.raises(Unsupported) as caught:
        inspector.feed(next(stream))
    assert caught.value.code == "unsupported_image"


def test_long_non_image_stream_in_tiny_chunks_is_refused_within_32_bytes() -> None:
    inspector = ImageInspector(LIMIT)
    with pytest.raises(Unsupported):
        for piece in chunks(NOT_IMAGES["html"] * 1000, 1):
            inspector.feed(piece)
    assert inspector.size <= 32


def test_image_signature_followed_by_garbage_is_refused() -> None:
    data = b"\x89PNG\r\n\x1a\n" + random.Random(4).randbytes(100_000)
    with pytest.raises(Invalid):
        inspect(data, 64 * 1024)


# --- pixel bombs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("claim", [(100_000, 100_000), (10_000, 10_000), (1, 89_478_486)])
def test_pixel_bomb_is_refused(claim: tuple[int, int], chunk: int | None) -> None:
    # 10000x10000 is over our limit but under Pillow's own error threshold (twice its limit).
    with pytest.raises(TooLarge) as caught:
        inspect(png_header_claiming(*claim), chunk)
    assert caught.value.code == "too_many_pixels"
    assert caught.value.status == 413


def test_webp_pixel_bomb_is_refused_from_its_header() -> None:
    width, height = 16_384, 16_384
    header = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    data = b"RIFF" + struct.pack("<I", 4 + len(header) + 8192) + b"WEBP" + header + b"\x00" * 8192
    inspector = ImageInspector(LIMIT)
    with pytest.raises(TooLarge) as caught:
        for piece in chunks(data, 1024):
            inspector.feed(piece)
    assert caught.value.code == "too_many_pixels"
    assert inspector.size <= 4096  # refused from the header, not after the whole body


@pytest.mark.parametrize("fmt", FORMATS)
def test_small_pixel_limit_refuses_a_normal_image(fmt: str) -> None:
    data = make_image(fmt)
    with pytest.raises(TooLarge) as caught:
        inspect(data, max_pixels=32 * 24 - 1)
    assert caught.value.code == "too_many_pixels"
    assert inspect(data, max_pixels=32 * 24).width == 32  # the limit itself is allowed


# --- what follows the end ------------------------------------------------------------------------

PAYLOAD = b"<script>alert(document.domain)</script>"


def test_gif_followed_by_a_script_payload_is_refused() -> None:
    """A GIF/HTML polyglot: the end check requires a GIF to end with its trailer (0x3B), so
    bytes after it are refused as a damaged image (code `truncated_image`).

    This is the truncation check doing its job, not a polyglot defence: JPEG and PNG keep
    tolerating bytes after their end marker (below), because cameras and editors append data
    there, and a GIF payload that happens to end in ';' passes. Polyglots are defused where
    images are served (their sniffed image Content-Type), which these unit tests do not cover."""
    gif = make_image("gif")
    assert inspect(gif).format.name == "GIF"
    with pytest.raises(Invalid) as caught:
        inspect(gif + PAYLOAD)
    assert caught.value.code == "truncated_image"


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_bytes_after_the_end_marker_are_tolerated(fmt: str) -> None:
    data = make_image(fmt) + b"\x00" * 16 + PAYLOAD
    assert inspect(data).format.name == PILLOW_FORMATS[fmt]


# --- errors --------------------------------------------------------------------------------------


def test_error_statuses() -> None:
    cases: list[tuple[bytes, int]] = [(b"", 400), (NOT_IMAGES["text"], 415), (make_image("png")[:-20], 400)]
    for data, status in cases:
        with pytest.raises(GatewayError) as caught:
            inspect(data)
        assert caught.value.status == status


def test_configured_pixel_limit_above_pillows_own_is_honoured() -> None:
    """300 megapixels is over twice Pillow's default bomb limit; our configured limit decides."""
    inspector = ImageInspector(max_pixels=500_000_000)
    inspector.feed(png_header_claiming(20_000, 15_000))
    info = inspector.finish()
    assert (info.width, info.height) == (20_000, 15_000)


# --- AVIF and HEIC -------------------------------------------------------------------------------


def _iso_bmff(fmt: str, size: tuple[int, int] = (203, 151), **save: object) -> bytes:
    import pillow_heif

    rng = random.Random(f"{fmt}{size}")
    image = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    if fmt == "avif":
        image.save(buffer, "AVIF", **save)
    else:
        pillow_heif.from_pillow(image).save(buffer, **save)
    return buffer.getvalue()


@pytest.mark.parametrize("chunk", CHUNKINGS)
@pytest.mark.parametrize(("fmt", "name", "content_type"), [("avif", "AVIF", "image/avif"), ("heic", "HEIF", "image/heic")])
def test_avif_and_heic_identified_however_chunked(fmt: str, name: str, content_type: str, chunk: int | None) -> None:
    data = _iso_bmff(fmt)
    info = inspect(data, chunk)
    assert (info.format.name, info.format.content_type, info.format.extension, info.width, info.height) == (name, content_type, fmt, 203, 151)


@pytest.mark.parametrize("fmt", ["avif", "heic"])
def test_avif_and_heic_identified_from_the_first_4_kib(fmt: str) -> None:
    data = _iso_bmff(fmt, (640, 480))
    assert len(data) > 16 * 1024
    inspector = ImageInspector(LIMIT)
    for piece in chunks(data[:4096], 512):
        inspector.feed(piece)
    assert inspector.info is not None and (inspector.info.width, inspector.info.height) == (640, 480)


@pytest.mark.parametrize("fmt", ["avif", "heic"])
def test_truncated_avif_and_heic_refused(fmt: str) -> None:
    data = _iso_bmff(fmt)
    with pytest.raises(Invalid):
        inspect(data[: len(data) - 100], 4096)


def test_avif_alpha_plane_does_not_change_the_size() -> None:
    image = Image.new("RGBA", (120, 80), (255, 0, 0, 128))
    buffer = io.BytesIO()
    image.save(buffer, "AVIF")
    info = inspect(buffer.getvalue())
    assert (info.width, info.height) == (120, 80)


def test_avif_over_the_pixel_limit_refused_from_its_header() -> None:
    with pytest.raises(TooLarge):
        inspect(_iso_bmff("avif", (300, 200)), 1024, max_pixels=300 * 200 - 1)
