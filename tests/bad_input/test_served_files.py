"""What comes back out: file names stay clean in the record and in Content-Disposition, an image
carrying a page after its end is served as an image."""

from __future__ import annotations


import pytest
from aiohttp.test_utils import TestClient

from gateway.keys import CONFIG
from tests.api.test_collections import fetch_object
from tests.bad_input.requests import Body, image_form, send
from tests.helpers import png

HTML = b"<html><script>alert(document.cookie)</script></html>"
EVIL_NAMES = [
    b"a%0D%0AX-Injected: 1.png",
    b'quote".png',
    b"..\\..\\windows\\evil.png",
    b"../../etc/passwd.png",
    b"tab\there.png",
    "caf\u00e9\u2028line.png".encode(),
    b"n" * 5000 + b".png",
]


@pytest.mark.parametrize("filename", EVIL_NAMES, ids=range(len(EVIL_NAMES)))
async def test_file_names_stay_clean(client: TestClient, filename: bytes) -> None:
    response = await send(client, "POST", "/collections/c/images", Body.form(image_form(png(), filename)))
    assert response.status == 200, await response.text()
    doc = await response.json()
    assert len(doc["image"]) <= 255
    assert not any(c in doc["image"] for c in '\r\n"\\/\t\u2028'), doc["image"]
    _, headers = await fetch_object(client, doc)
    disposition = headers["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition and "X-Injected" not in headers
    assert disposition.count('"') in (0, 2), disposition


async def test_image_with_a_page_after_its_end_is_served_as_an_image(client: TestClient) -> None:
    response = await send(client, "POST", "/collections/c/images", Body.form(image_form(png() + HTML, b"poly.html")))
    assert response.status == 200, await response.text()
    doc = await response.json()
    assert doc["content_type"] == "image/png" and doc["image"] == "poly.html"
    body, headers = await fetch_object(client, doc)
    assert headers["Content-Type"] == "image/png"
    if client.server.app[CONFIG].storage.backend == "filesystem":
        assert headers["X-Content-Type-Options"] == "nosniff"
