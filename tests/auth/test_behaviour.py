"""Auth details beyond the matrix: caching, single-flight, key rotation, owner scope, CORS, headers."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from gateway.auth.identity import IdentityClient
from gateway.keys import AUTH
from tests.auth.helpers import WRITER_KEY, auth_tree, oidc_tree
from tests.auth.servers import rsa_key
from tests.helpers import png

ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}


def upload_form(seed: int = 0) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("image", png(seed=seed), filename="a.png")
    return form


async def test_a_burst_costs_one_identity_call_and_the_cache_holds_no_token(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url))
    identity.mode = "slow"
    answers = await asyncio.gather(*(client.get("/collections", headers=ALICE) for _ in range(20)))
    assert [r.status for r in answers] == [200] * 20
    assert identity.calls == 1
    await client.get("/collections", headers=ALICE)
    assert identity.calls == 1
    cache = client.app[AUTH]._identity._cache  # type: ignore[union-attr]
    assert all("alice" not in key for key in cache)


async def test_refusals_and_failures_are_not_cached(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url))
    identity.mode = "error"
    assert (await client.get("/collections", headers=ALICE)).status == 503
    identity.mode = "ok"
    assert (await client.get("/collections", headers=ALICE)).status == 200


async def test_the_cache_is_bounded_least_recently_used_first(identity: Any) -> None:
    async with aiohttp.ClientSession() as session:
        client = IdentityClient(session, identity.url, timeout=5, cache_seconds=60, cache_size=1)
        await client.identify(ALICE)
        await client.identify(BOB)
        await client.identify(ALICE)
    assert identity.calls == 3


async def test_an_unknown_kid_refetches_the_key_set_at_most_once_per_interval(auth_client: Any, jwks: Any) -> None:
    limited = await auth_client(oidc_tree(jwks, oidc_jwks_refresh_seconds=3600))
    assert (await limited.get("/collections", headers={"Authorization": f"Bearer {jwks.token()}"})).status == 200
    assert jwks.fetches == 1
    forged = jwks.token(kid="k1", key=rsa_key())
    unknown = {"Authorization": f"Bearer {forged}"}
    jwks.keys["k2"] = rsa_key()
    rotated = {"Authorization": f"Bearer {jwks.token(kid='k2')}"}
    for _ in range(5):  # tokens naming unknown keys must not make us hammer the provider
        assert (await limited.get("/collections", headers=rotated)).status == 401
        assert (await limited.get("/collections", headers=unknown)).status == 401
    assert jwks.fetches == 1
    # Without the rate limit in the way, a rotated key is picked up on first sight.
    eager = await auth_client(oidc_tree(jwks, oidc_jwks_refresh_seconds=0))
    assert (await eager.get("/collections", headers={"Authorization": f"Bearer {jwks.token()}"})).status == 200
    assert (await eager.get("/collections", headers=rotated)).status == 200


async def test_scope_user_holds_each_user_to_their_own_images(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url, scope="user"))
    response = await client.post("/collections/shared/images", data=upload_form(1), headers=ALICE)
    assert response.status == 200
    alice_image = await response.json()
    assert alice_image["owner"] == "alice"
    assert (await client.post("/collections/shared/images", data=upload_form(2), headers=BOB)).status == 200
    listed = await (await client.get("/collections/shared/images", headers=ALICE)).json()
    assert [doc["owner"] for doc in listed] == ["alice"]
    target = f"/collections/shared/images/{alice_image['id']}"
    for method, path in (("GET", target), ("PATCH", target), ("GET", target + "/image"), ("DELETE", target)):
        response = await client.request(method, path, headers=BOB, json={"x": 1} if method == "PATCH" else None, allow_redirects=False)
        assert (response.status, (await response.json())["error"]["code"]) == (403, "not_owner"), (method, path)
    assert (await client.delete("/collections/shared", headers=ALICE)).status == 403
    assert (await client.get(target, headers=ALICE)).status == 200
    # Services see everything.
    listed = await (await client.get("/collections/shared/images", headers={"X-API-Key": WRITER_KEY})).json()
    assert len(listed) == 2


@pytest.mark.parametrize("origins", [[], ["https://app.example"]])
async def test_cors_is_off_by_default_and_answers_preflights_when_configured(make_client: Any, origins: list[str]) -> None:
    client = await make_client({"cors": {"allowed_origins": origins}})
    preflight = await client.options(
        "/collections", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    )
    simple = await client.get("/collections", headers={"Origin": "https://app.example"})
    stranger = await client.get("/collections", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    if not origins:
        assert preflight.status == 405
        assert "Access-Control-Allow-Origin" not in simple.headers
    else:
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "X-API-Key" in preflight.headers["Access-Control-Allow-Headers"]
        assert simple.headers["Access-Control-Allow-Origin"] == "https://app.example"


async def test_every_answer_carries_the_security_headers(make_client: Any) -> None:
    client = await make_client()
    for path in ("/", "/collections", "/nowhere", "/collections/..%2f/images"):
        response = await client.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert "default-src 'none'" in response.headers["Content-Security-Policy"], path


@pytest.mark.parametrize(
    "payload",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        b"<!doctype html><html><script>alert(1)</script></html>",
        b"GIF89a<script>alert(1)</script>",  # a polyglot: an image header, then a page
    ],
)
async def test_svg_html_and_polyglots_are_never_stored_as_images(make_client: Any, payload: bytes) -> None:
    client = await make_client()
    form = aiohttp.FormData()
    form.add_field("image", payload, filename="cat.png", content_type="image/png")
    response = await client.post("/collections/x/images", data=form)
    assert response.status in (400, 415)
    assert "code" in (await response.json())["error"]
    assert await (await client.get("/collections")).json() == []
