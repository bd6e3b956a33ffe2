"""Stand-ins for the identity service and an OIDC provider's JWKS, on free loopback ports."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://idp.test"
AUDIENCE = "image-gateway"
USERS = {"Bearer alice-token": "alice", "Bearer bob-token": "bob"}


class IdentityService:
    """Answers like seed 001's identification URL; `mode` switches it to 401, 500 or a hang."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        self.release = asyncio.Event()

    async def identify(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.mode == "hang":
            await self.release.wait()
        if self.mode == "slow":
            await asyncio.sleep(0.05)  # long enough for concurrent callers to pile up
        if self.mode == "error":
            return web.json_response({"detail": "boom"}, status=500)
        authorization = request.headers.get("Authorization") or request.cookies.get("jwt", "")
        user = USERS.get(authorization) or USERS.get(f"Bearer {authorization}")
        if self.mode == "refuse" or user is None:
            return web.json_response({"detail": "unauthorized"}, status=401)
        return web.json_response({"id": user, "email": f"{user}@example.test"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/identify", self.identify)
        return app


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


class Jwks:
    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {"k1": rsa_key()}
        self.fetches = 0

    async def serve(self, request: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response({"keys": [public_jwk(k, kid) for kid, k in self.keys.items()]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/jwks", self.serve)
        return app

    def token(self, sub: str = "alice", *, kid: str = "k1", key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
        return jwt.encode(payload, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})
