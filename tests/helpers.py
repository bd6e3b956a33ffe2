"""What tests share besides fixtures: images made on the spot (real ones of every supported
format, and broken ones), and configurations built from override trees for each backend."""

from __future__ import annotations

import functools
import io
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gateway import config as gateway_config
from gateway.config import Config, load_config

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


# --- configurations ------------------------------------------------------------------------------

REQUIRE_PEERS = os.environ.get("GATEWAY_REQUIRE_PEERS", "") not in ("", "0", "false")


def missing_peer(name: str) -> None:
    """Skip (or, under GATEWAY_REQUIRE_PEERS=1, fail) a test whose peer binary is not built."""
    message = f"{name} is not built: `make peers` builds it (needs Go) for the real-peer tier"
    if REQUIRE_PEERS:
        pytest.fail(message + "; GATEWAY_REQUIRE_PEERS=1 forbids skipping", pytrace=False)
    pytest.skip(message)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def merge(*trees: dict[str, Any]) -> dict[str, Any]:
    """Override trees laid over each other, later ones winning, as the config loader does."""
    return functools.reduce(gateway_config.merge, trees, {})


def make_config(tmp_path: Path, *trees: dict[str, Any]) -> Config:
    return load_config(environ={}, overrides=merge({"data_dir": str(tmp_path / "data")}, *trees))


def s3_overrides(endpoint: str, access_key: str, secret_key: str) -> dict[str, Any]:
    return {
        "storage": {
            "backend": "s3",
            "s3": {"endpoint_url": endpoint, "bucket": unique("test"), "access_key_id": access_key, "secret_access_key": secret_key},
        }
    }


def mongo_overrides(url: str) -> dict[str, Any]:
    return {"metadata": {"backend": "mongodb", "mongodb_url": url, "mongodb_db": unique("db").replace("-", "_")}}


# --- backend selection: parameters, and the overrides each one needs (from session fixtures) ---

STORAGE_BACKENDS = [
    pytest.param("filesystem", marks=pytest.mark.embedded),
    pytest.param("moto", marks=pytest.mark.moto),
    pytest.param("minio", marks=pytest.mark.peers),
]
METADATA_BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.embedded),
    pytest.param("ferretdb", marks=pytest.mark.peers),
]
APP_BACKENDS = [
    pytest.param("embedded", marks=pytest.mark.embedded),
    pytest.param("minio+ferretdb", marks=pytest.mark.peers),
]


def storage_overrides(request: pytest.FixtureRequest, backend: str) -> dict[str, Any]:
    if backend == "moto":
        return s3_overrides(request.getfixturevalue("moto_endpoint"), "testing", "testing")
    if backend == "minio":
        server = request.getfixturevalue("minio")
        return s3_overrides(server.endpoint, server.access_key, server.secret_key)
    return {}


def metadata_overrides(request: pytest.FixtureRequest, backend: str) -> dict[str, Any]:
    if backend == "ferretdb":
        return mongo_overrides(request.getfixturevalue("ferretdb").url)
    return {}


def app_overrides(request: pytest.FixtureRequest, backend: str) -> dict[str, Any]:
    if backend == "minio+ferretdb":
        return merge(storage_overrides(request, "minio"), metadata_overrides(request, "ferretdb"))
    return {}
