"""Test data made on the spot: real images of every supported format, and broken ones."""

from __future__ import annotations

import io

from PIL import Image

PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "tiff": "TIFF", "bmp": "BMP"}


def make_image(fmt: str = "png", size: tuple[int, int] = (32, 24), color: tuple[int, int, int] = (200, 30, 90), **save: object) -> bytes:
    image = Image.new("RGB", size, color)
    # A little structure so compressed formats are not trivially small.
    for x in range(0, size[0], 3):
        image.putpixel((x, x % size[1]), (x % 256, 255 - x % 256, 0))
    buffer = io.BytesIO()
    image.save(buffer, PILLOW_FORMATS[fmt], **save)
    return buffer.getvalue()


def png(size: tuple[int, int] = (32, 24), seed: int = 0) -> bytes:
    return make_image("png", size, color=(seed % 256, (seed * 7) % 256, (seed * 13) % 256))


def jpeg(size: tuple[int, int] = (32, 24), seed: int = 0) -> bytes:
    return make_image("jpeg", size, color=(seed % 256, (seed * 7) % 256, (seed * 13) % 256))


def noisy_jpeg(size: tuple[int, int]) -> bytes:
    """A JPEG that does not compress well, for bodies larger than a multipart part."""
    import os

    image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height`: a decompression bomb's signature."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
