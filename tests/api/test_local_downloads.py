"""The filesystem backend's signed download links, served by the gateway itself."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from yarl import URL

from gateway.keys import BLOBS
from tests.helpers import jpeg

pytestmark = pytest.mark.embedded


async def fetch(client: Any, location: URL, headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    # As a browser follows a Location: the URL exactly as sent, without re-quoting.
    return await client.session.get(URL(str(location), encoded=True), headers=headers)


@pytest.fixture
async def link(make_client: Any) -> tuple[Any, URL, bytes]:
    client = await make_client()
    image = jpeg((120, 80))
    data = aiohttp.FormData()
    data.add_field("image", image, filename="Été \"quoted\".jpg", content_type="image/jpeg")
    doc = await (await client.post("/collections/local/images", data=data)).json()
    redirect = await client.get(f"/collections/local/images/{doc['id']}/image", allow_redirects=False)
    assert redirect.status == 302
    assert redirect.headers["Cache-Control"].startswith("private, max-age=")
    location = URL(redirect.headers["Location"], encoded=True)
    assert doc["image"] == "Été _quoted_.jpg"
    assert location.is_absolute() and location.path.startswith("/_objects/local/")
    return client, location, image


async def test_served_with_type_disposition_cache_and_safety_headers(link: Any) -> None:
    client, location, image = link
    response = await fetch(client, location)
    assert response.status == 200
    assert await response.read() == image
    assert response.headers["Content-Type"] == "image/jpeg"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("inline; filename=") and "filename*=UTF-8''%C3%89t%C3%A9" in disposition
    assert "\r" not in disposition and "\n" not in disposition
    assert response.headers["Cache-Control"].startswith("private, max-age=")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert response.headers["ETag"]


async def test_range_and_conditional_requests(link: Any) -> None:
    client, location, image = link
    partial = await fetch(client, location, headers={"Range": "bytes=10-19"})
    assert partial.status == 206
    assert await partial.read() == image[10:20]
    assert partial.headers["Content-Range"] == f"bytes 10-19/{len(image)}"
    etag = (await fetch(client, location)).headers["ETag"]
    cached = await fetch(client, location, headers={"If-None-Match": etag})
    assert cached.status == 304


@pytest.mark.parametrize(
    "tamper",
    [
        lambda u: u.with_query({**u.query, "signature": "0" * 64}),
        lambda u: u.with_query({**u.query, "expires": str(int(u.query["expires"]) + 1)}),
        lambda u: u.with_query({**u.query, "filename": "evil.html"}),
        lambda u: u.with_query({k: v for k, v in u.query.items() if k != "signature"}),
        lambda u: u.with_path(u.path.replace("/local/", "/other/")),
    ],
    ids=["signature", "expiry", "filename", "unsigned", "path"],
)
async def test_tampered_links_are_403_json(link: Any, tamper: Any) -> None:
    client, location, _ = link
    response = await fetch(client, tamper(location))
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "invalid_signature"


async def test_expired_link_is_403(make_client: Any) -> None:
    client = await make_client()
    store = client.server.app[BLOBS]
    # Signed correctly, but ten seconds in the past.
    past = URL(store._signer.sign("/_objects/local/" + "a" * 24 + ".jpg", {"filename": "x.jpg"}, ttl=-10), encoded=True)
    response = await fetch(client, client.make_url(str(past)))
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "link_expired"


async def test_a_file_read_whole_answers_as_a_streamed_one_would(link: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small files are read in one piece, larger ones streamed: same bytes, same validators, so
    a conditional request made after either matches."""
    from gateway.api import signed_downloads

    client, location, image = link
    whole = await fetch(client, location)
    monkeypatch.setattr(signed_downloads, "WHOLE_FILE_MAX", 10)
    streamed = await fetch(client, location)
    for response in (whole, streamed):
        assert response.status == 200 and await response.read() == image
    for name in ("ETag", "Last-Modified", "Accept-Ranges", "Content-Type", "Content-Disposition", "Content-Security-Policy"):
        assert whole.headers[name] == streamed.headers[name], name
    assert (await fetch(client, location, headers={"If-None-Match": whole.headers["ETag"]})).status == 304
    head = await client.session.head(URL(str(location), encoded=True))
    assert head.status == 200 and int(head.headers["Content-Length"]) == len(image)


async def test_a_missing_object_is_404_whichever_way_it_is_read(link: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.api import signed_downloads

    client, location, _ = link
    key = location.path.removeprefix("/_objects/")
    client.server.app[BLOBS].local_path(key).unlink()
    for limit in (signed_downloads.WHOLE_FILE_MAX, 10):
        monkeypatch.setattr(signed_downloads, "WHOLE_FILE_MAX", limit)
        response = await fetch(client, location)
        assert response.status == 404
        assert (await response.json())["error"]["code"]
