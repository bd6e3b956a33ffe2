"""The auth matrix: every route of both APIs, from the route table, under each kind of caller.

Each test is one column of the matrix (no credentials, bad ones, good ones, wrong scope, public
collection, identity service down, bad JWTs) and walks every route the app registers, so a new
route is covered the moment it is registered and documented.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import aiohttp
import jwt
from aiohttp.test_utils import TestClient

from yarl import URL
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.api import openapi
from tests.auth.helpers import OTHER_KEY, READER_KEY, WRITER_KEY, auth_tree, oidc_tree
from tests.auth.servers import AUDIENCE, ISSUER, rsa_key
from tests.helpers import png

COLLECTION = "c-auth"
WRITES = {"post", "put", "patch", "delete"}
SIGNED_LINKS: dict[str, str] = {}


async def seed(client: TestClient) -> str:
    """One image in COLLECTION and one in the default collection (seed 000's), with the same id
    layout; returns the collection image's id."""
    headers = {"X-API-Key": WRITER_KEY}
    response = await client.post("/v1/images", json={"data": base64.b64encode(png()).decode()}, headers=headers)
    assert response.status == 201, await response.text()
    form = aiohttp.FormData()
    form.add_field("image", png(seed=1), filename="one.png")
    response = await client.post(f"/collections/{COLLECTION}/images", data=form, headers=headers)
    assert response.status == 200, await response.text()
    image_id = (await response.json())["id"]
    link = await client.get(f"/collections/{COLLECTION}/images/{image_id}/image", headers=headers, allow_redirects=False)
    assert link.status == 302
    SIGNED_LINKS[image_id] = URL(link.headers["Location"]).path_qs
    form = await client.post(f"/collections/{COLLECTION}/uploads", json={"size": 10, "content_type": "image/png"}, headers=headers)
    assert form.status == 201, await form.text()
    SIGNED_LINKS["upload_form"] = URL((await form.json())["url"]).path_qs
    return image_id


def routes(client: TestClient) -> list[tuple[str, str]]:
    # Deletions last, so the other routes still find the seeded image.
    return sorted(openapi.registered(client.app), key=lambda route: (route[0] == "delete", route[1], route[0]))


def concrete(path: str, image_id: str, collection: str = COLLECTION) -> str:
    if path == "/_objects/{key}":
        # The signature is the credential: the link the download route handed out.
        return SIGNED_LINKS[image_id]
    if path == "/_uploads/{key}":
        return SIGNED_LINKS["upload_form"]
    return path.replace("{collection}", collection).replace("{image_id}", image_id).replace("{upload_id}", "0" * 32).replace("{key}", "label")


async def call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any] | None, Any]:
    body: dict[str, Any] = {}
    if method in ("put", "patch"):
        body["json"] = {"k": "v"}
    response = await client.request(method.upper(), path, headers=headers, allow_redirects=False, **body)
    payload = await response.json() if response.content_type == "application/json" else None
    return response.status, payload, response.headers


def error_code(method: str, payload: dict[str, Any] | None) -> str | None:
    """The answer's error code; a HEAD answer (tus's HEAD is a route of its own) has no body,
    so it shows none and only its status is compared."""
    if method == "head":
        return None
    assert payload is not None and set(payload["error"]) == {"code", "message"}
    return payload["error"]["code"]


def is_public(client: TestClient, method: str, path: str) -> bool:
    return (method, path) in openapi.public_routes(client.app)


async def expect_refused(client: TestClient, headers: dict[str, str], status: int, code: str | None = None) -> int:
    image_id = await seed(client)
    checked = 0
    for method, path in routes(client):
        got, payload, response_headers = await call(client, method, concrete(path, image_id), headers)
        if is_public(client, method, path):
            assert got not in (401, 403) and got < 500, (method, path, got, payload)
            continue
        assert got == status, (method, path, got, payload)
        found = error_code(method, payload)
        if code is not None and method != "head":
            assert found == code, (method, path, payload)
        if status == 401:
            assert response_headers["WWW-Authenticate"].startswith("Bearer"), (method, path)
        checked += 1
    assert checked >= 40
    return checked


async def test_no_credentials(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url))
    await expect_refused(client, {}, 401, "unauthenticated")


async def test_bad_credentials(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url))
    await expect_refused(client, {"Authorization": "Bearer mallory-token"}, 401, "invalid_credentials")
    await expect_refused(client, {"X-API-Key": "not-a-key"}, 401, "invalid_credentials")


async def test_good_credentials_reach_every_route(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url))
    image_id = await seed(client)
    for method, path in routes(client):
        for headers in ({"Authorization": "Bearer alice-token"}, {"Cookie": "jwt=alice-token"}, {"X-API-Key": WRITER_KEY}):
            status, payload, _ = await call(client, method, concrete(path, image_id), headers)
            assert status not in (401, 403) and status < 500, (method, path, headers, status, payload)


async def test_wrong_scope_is_403(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url))
    image_id = await seed(client)
    for method, path in routes(client):
        if is_public(client, method, path):
            continue
        status, payload, _ = await call(client, method, concrete(path, image_id), {"X-API-Key": READER_KEY})
        if method in WRITES:
            assert (status, error_code(method, payload)) == (403, "insufficient_scope"), (method, path, status)
        else:
            assert status not in (401, 403) and status < 500, (method, path, status)
        # A key held to other-* collections: refused wherever a collection is named (seed 000's
        # routes name the default one).
        status, payload, _ = await call(client, method, concrete(path, image_id), {"X-API-Key": OTHER_KEY})
        if "{collection}" in path or path.startswith("/v1/"):
            expected = None if method == "head" else "collection_forbidden"
            assert (status, error_code(method, payload)) == (403, expected), (method, path, status)


async def test_public_collection_reads_need_no_credentials_writes_do(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url, public_collections=["c-*"]))
    image_id = await seed(client)
    for method, path in routes(client):
        if is_public(client, method, path):
            continue
        status, payload, _ = await call(client, method, concrete(path, image_id), {})
        if "{collection}" in path and method not in WRITES:
            assert status not in (401, 403) and status < 500, (method, path, status, payload)
        else:
            assert status == 401, (method, path, status)
        # Not public: the same route on another collection.
        status, _, _ = await call(client, method, concrete(path, image_id, "private"), {})
        assert status == 401, (method, path, status)


async def test_identity_service_down_is_503_never_open(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url))
    await seed(client)
    identity.mode = "error"
    await expect_refused(client, {"Authorization": "Bearer alice-token"}, 503, "identity_unavailable")


async def test_identity_service_timeout_is_503(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url, identification_timeout_seconds=0.2))
    identity.mode = "hang"
    started = time.monotonic()
    response = await client.get("/collections", headers={"Authorization": "Bearer alice-token"})
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "identity_unavailable"
    assert time.monotonic() - started < 5


async def test_identity_service_unreachable_is_503(auth_client: Any) -> None:
    from tests.peers import free_port

    client = await auth_client(auth_tree(identification_url=f"http://127.0.0.1:{free_port()}/identify"))
    response = await client.get("/collections", headers={"Authorization": "Bearer alice-token"})
    assert response.status == 503
    assert "127.0.0.1" not in await response.text()  # no backend endpoint in the answer


async def test_expired_and_forged_jwts_are_401(auth_client: Any, jwks: Any) -> None:
    client = await auth_client(oidc_tree(jwks))
    public_pem = jwks.keys["k1"].public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    bad_tokens = {
        "expired": jwks.token(exp=int(time.time()) - 3600),
        "forged": jwks.token(key=rsa_key()),
        "wrong audience": jwks.token(aud="someone-else"),
        "wrong issuer": jwks.token(iss="https://evil.test"),
        "alg none": jwt.encode({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}, None, algorithm="none", headers={"kid": "k1"}),
        "hmac with the public key": _hs256_with(public_pem),
        "unknown kid": jwt.encode({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}, rsa_key(), algorithm="RS256", headers={"kid": "k9"}),
        "garbage": "not.a.jwt",
    }
    await expect_refused(client, {"Authorization": f"Bearer {bad_tokens['expired']}"}, 401, "invalid_token")
    await expect_refused(client, {"Authorization": f"Bearer {bad_tokens['forged']}"}, 401, "invalid_token")
    for name, token in bad_tokens.items():
        response = await client.get(f"/collections/{COLLECTION}/images", headers={"Authorization": f"Bearer {token}"})
        assert response.status == 401, name
        assert (await response.json())["error"]["code"] in ("invalid_token", "invalid_credentials"), name
    good = await client.get(f"/collections/{COLLECTION}/images", headers={"Authorization": f"Bearer {jwks.token()}"})
    assert good.status == 200


def _hs256_with(secret: bytes) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    header = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"sub": "alice", "iss": "https://idp.test", "aud": "image-gateway", "exp": int(time.time()) + 60}).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"

