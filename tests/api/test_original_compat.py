"""Issue 9's audit: behaviours of the original service (v2.8.1, the release seed 001 describes,
run against MinIO+FerretDB) that its clients rely on, each asserted as the original answered it.
What still differs, and why, is listed in the README ("Differences from the original service")."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.api.test_collections import form, upload
from tests.helpers import png


async def test_every_route_also_answers_with_a_trailing_slash(client: TestClient) -> None:
    # Express routing ignores one trailing slash, so `f"{base}/collections/{c}/images/"` worked.
    response = await client.post("/collections/slash/images/", data=form(png(), label="a"))
    assert response.status == 200, await response.text()
    doc = await response.json()
    ident = doc["id"]
    assert await (await client.get("/collections/")).json() == ["slash"]
    assert (await (await client.get("/collections/slash/")).json())["documents"] == 1
    for noun in ("images", "documents", "items"):
        listing = await client.get(f"/collections/slash/{noun}/?limit=10")
        assert [d["id"] for d in await listing.json()] == [ident], noun
        for path in (f"/collections/slash/{noun}/{ident}/", f"/collections/slash/{noun}/{ident}/info/"):
            assert (await (await client.get(path)).json())["id"] == ident, path
        for path in (f"/collections/slash/{noun}/{ident}/image/", f"/collections/slash/{noun}/{ident}/file/"):
            assert (await client.get(path, allow_redirects=False)).status == 302, path
    patched = await client.patch(f"/collections/slash/images/{ident}/", json={"label": "b"})
    assert (await patched.json())["properties"] == {"label": "b"}
    replaced = await client.put(f"/collections/slash/images/{ident}/", json={"label": "c"})
    assert (await replaced.json())["properties"] == {"label": "c"}
    fields = await (await client.get("/collections/slash/fields/")).json()
    assert [f["key"] for f in fields["fields"]] == ["label"]
    values = await (await client.get("/collections/slash/fields/label/")).json()
    assert values["values"] == [{"value": "c", "count": 1}]
    assert (await client.get("/collections/slash/export/")).status == 200
    assert (await client.delete(f"/collections/slash/images/{ident}/")).status == 200
    assert (await client.get(f"/collections/slash/images/{ident}")).status == 404
    assert (await client.delete("/collections/slash/")).status == 200


async def test_a_single_delete_answers_the_deleted_count(client: TestClient) -> None:
    # The original answered MongoDB's deleteOne result: {"deletedCount": 1, "n": 1, "ok": 1, ...}.
    doc = await upload(client, "gone")
    answer = await (await client.delete(f"/collections/gone/images/{doc['id']}")).json()
    assert answer["deletedCount"] == 1 and answer["deleted"] is True


async def test_the_export_is_named_as_the_originals(client: TestClient) -> None:
    await upload(client, "named")
    response = await client.get("/collections/named/export")
    assert response.status == 200
    # The original: `Content-Disposition: attachment; filename=<collection>_export.zip`.
    assert response.headers["Content-Disposition"] == 'attachment; filename="named_export.zip"'
    assert "mongodb_data.json" in zipfile.ZipFile(io.BytesIO(await response.read())).namelist()


# --- CORS preflights: the original's Express cors() reflected the headers asked for -------------


@pytest.mark.embedded
async def test_a_preflight_allows_the_headers_it_asks_for(make_client: Any) -> None:
    client = await make_client()
    asked = {"Origin": "https://front-end.example", "Access-Control-Request-Method": "GET"}
    preflight = await client.options("/collections/c/images", headers={**asked, "Access-Control-Request-Headers": "cache-control,x-requested-with"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Headers"] == "cache-control,x-requested-with"
    assert preflight.headers["Vary"] == "Access-Control-Request-Headers"
    # Nothing asked, or not a list of header names: the headers this API reads.
    for extra in ({}, {"Access-Control-Request-Headers": "x-a, (bad)"}):
        plain = await client.options("/collections/c/images", headers={**asked, **extra})
        assert plain.headers["Access-Control-Allow-Headers"] == (
            "Authorization, Content-Type, If-Match, X-API-Key, X-Request-ID, Idempotency-Key, "
            "Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, Upload-Checksum, Upload-Defer-Length, Upload-Concat"
        )
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    listed = await make_client({"cors": {"allowed_origins": ["https://front-end.example"]}})
    narrowed = await listed.options("/collections/c/images", headers={**asked, "Access-Control-Request-Headers": "cache-control"})
    assert narrowed.headers["Access-Control-Allow-Origin"] == "https://front-end.example"
    assert narrowed.headers["Vary"] == "Access-Control-Request-Headers, Origin"


# --- the identification URL: what the original sent it -----------------------------------------


@pytest.fixture
async def header_only_identity(aiohttp_server: Any) -> Any:
    """An identification service that reads only `Authorization: Bearer`, as the original's
    identification middleware sent every token (from the header, the `jwt` or `token` cookie)."""
    seen: list[dict[str, str]] = []

    async def identify(request: web.Request) -> web.Response:
        seen.append({k: v for k, v in request.headers.items() if k in ("Authorization", "Cookie")})
        if request.headers.get("Authorization", "").startswith("Bearer good-"):
            return web.json_response({"_id": "alice", "username": "alice"})
        return web.json_response({"message": "Unauthorized"}, status=401)

    app = web.Application()
    app.router.add_get("/users/self", identify)
    server = await aiohttp_server(app)
    return str(server.make_url("/users/self")), seen


@pytest.mark.embedded
async def test_cookie_tokens_reach_the_identification_url_as_a_bearer_token(make_client: Any, header_only_identity: Any) -> None:
    url, seen = header_only_identity
    client = await make_client({"auth": {"enabled": True, "identification_url": url}})
    # (Each with its own token: positive answers are cached per credential.)
    for cookie in ("jwt", "token"):
        seen.clear()
        response = await client.get("/collections", cookies={cookie: f"good-{cookie}"})
        assert response.status == 200, (cookie, await response.text())
        assert seen == [{"Authorization": f"Bearer good-{cookie}"}], cookie
    seen.clear()
    assert (await client.get("/collections", headers={"Authorization": "Bearer good-header"})).status == 200
    assert seen == [{"Authorization": "Bearer good-header"}]
    refused = await client.get("/collections", cookies={"jwt": "bad-token"})
    assert refused.status == 401
