"""Stores that fail on cue: wrappers around the real backends for fault-injection tests."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from gateway.errors import Unavailable
from gateway.keys import SERVICE
from gateway.metadata.base import MetadataStore
from gateway.service import ImageService
from gateway.storage.base import BlobStore
from tests.helpers import png


class Faulty:
    """Delegates to `inner`; `fail_before[name]` raises before the call, `fail_after[name]`
    performs the call and then raises (the write happened, but the caller cannot know)."""

    def __init__(self, inner: Any, label: str, journal: list[str]):
        self.inner = inner
        self.label = label
        # Shared by the stores of one service: the order of calls across both.
        self.journal = journal
        self.fail_before: dict[str, int] = {}
        self.fail_after: dict[str, int] = {}
        self.calls: list[str] = []

    def _due(self, table: dict[str, int], name: str) -> bool:
        if table.get(name, 0) > 0:
            table[name] -= 1
            return True
        return False

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target) or name.startswith("_"):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            self.journal.append(f"{self.label}.{name}")
            if self._due(self.fail_before, name):
                raise Unavailable(f"injected failure before {name}", code="injected")
            result = await target(*args, **kwargs)
            if self._due(self.fail_after, name):
                raise Unavailable(f"injected failure after {name}", code="injected")
            return result

        def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            async def generate() -> AsyncIterator[Any]:
                self.calls.append(name)
                self.journal.append(f"{self.label}.{name}")
                if self._due(self.fail_before, name):
                    raise Unavailable(f"injected failure before {name}", code="injected")
                async for item in target(*args, **kwargs):
                    yield item

            return generate()

        return stream if inspect.isasyncgenfunction(target) else call


def install(service: ImageService) -> tuple[Faulty, Faulty]:
    journal: list[str] = []
    blobs, meta = Faulty(service.blobs, "blobs", journal), Faulty(service.meta, "meta", journal)
    service.blobs, service.meta = blobs, meta  # type: ignore[assignment]
    return blobs, meta


async def object_keys(blobs: BlobStore, prefix: str = "") -> list[str]:
    inner = getattr(blobs, "inner", blobs)
    return [blob.key async for blob in inner.list(prefix)]


async def record_paths(meta: MetadataStore) -> list[str]:
    inner = getattr(meta, "inner", meta)
    return [record.path async for record in inner.records()]


async def assert_invariants(service: ImageService) -> tuple[list[str], list[str]]:
    """Every record has its object. Returns (record paths, object keys) for further checks."""
    paths = await record_paths(service.meta)
    keys = await object_keys(service.blobs)
    missing = sorted(set(paths) - set(keys))
    assert not missing, f"records without objects: {missing}"
    return paths, keys


async def send_half_an_upload(host: str, port: int, path: str, image: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection and send a multipart upload that announces all of `image` but carries
    only its first half: the client then either goes away or stalls, as the test decides."""
    boundary = "halfway"
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.bin\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    total = len(head) + len(image) + len(f"\r\n--{boundary}--\r\n")
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
        ).encode()
        + head
        + image[: len(image) // 2]
    )
    await writer.drain()
    return reader, writer


# --- the app-level helpers the fault tests share -------------------------------------------


def service_of(client: TestClient) -> ImageService:
    return client.server.app[SERVICE]


def image_form(image: bytes | None = None, **fields: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in fields.items():
        data.add_field(name, value)
    data.add_field("image", image or png(), filename="a.png", content_type="image/png")
    return data


async def upload(client: TestClient, collection: str = "faults", **fields: str) -> aiohttp.ClientResponse:
    return await client.post(f"/collections/{collection}/images", data=image_form(**fields))


async def faulty(client: TestClient) -> tuple[ImageService, Faulty, Faulty]:
    service = service_of(client)
    blobs, meta = install(service)
    return service, blobs, meta


async def assert_error(response: aiohttp.ClientResponse, status: int) -> None:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body["error"]) == {"code", "message"}
