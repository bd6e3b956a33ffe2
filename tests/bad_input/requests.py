"""Raw requests for the bad-input tables: paths sent exactly as written (no client-side
normalisation of `..` or percent-escapes) and multipart bodies built byte by byte, so that
invalid UTF-8 and odd headers reach the gateway unchanged."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from yarl import URL

BOUNDARY = "edge-boundary-7f3a9c"


@dataclass(frozen=True)
class Part:
    name: bytes
    body: bytes
    filename: bytes | None = None
    content_type: bytes | None = None


def multipart(*parts: Part, boundary: str = BOUNDARY) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type."""
    out = bytearray()
    for part in parts:
        out += b"--" + boundary.encode() + b"\r\n"
        disposition = b'Content-Disposition: form-data; name="' + part.name + b'"'
        if part.filename is not None:
            disposition += b'; filename="' + part.filename + b'"'
        out += disposition + b"\r\n"
        if part.content_type is not None:
            out += b"Content-Type: " + part.content_type + b"\r\n"
        out += b"\r\n" + part.body + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def image_form(image: bytes, filename: bytes = b"photo.png", **fields: bytes) -> tuple[bytes, str]:
    parts = [Part(name.encode(), value) for name, value in fields.items()]
    return multipart(*parts, Part(b"image", image, filename, b"application/octet-stream"))


@dataclass(frozen=True)
class Body:
    """What a case sends: raw bytes with a Content-Type, or nothing."""

    data: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any) -> Body:
        return cls(json.dumps(value).encode(), "application/json")

    @classmethod
    def raw_json(cls, text: str | bytes) -> Body:
        return cls(text.encode() if isinstance(text, str) else text, "application/json")

    @classmethod
    def form(cls, payload: tuple[bytes, str]) -> Body:
        return cls(payload[0], payload[1])


async def send(client: TestClient, method: str, path: str, body: Body | None = None) -> ClientResponse:
    """`path` goes on the wire as written: already percent-encoded, dot segments kept."""
    body = body or Body()
    headers = dict(body.headers)
    if body.content_type is not None:
        headers["Content-Type"] = body.content_type
    url = URL(f"http://{client.host}:{client.port}{path}", encoded=True)
    return await client.session.request(method, url, data=body.data, headers=headers, allow_redirects=False)
