"""Apps with authentication on, against the stand-in identity service and JWKS."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from tests.auth.servers import AUDIENCE, ISSUER, IdentityService, Jwks
from tests.conftest import APP_BACKENDS, app_overrides, make_config, merge

WRITER_KEY, READER_KEY, OTHER_KEY = "writer-secret-key", "reader-secret-key", "other-secret-key"
API_KEYS = [
    {"name": "writer", "sha256": hashlib.sha256(WRITER_KEY.encode()).hexdigest(), "scopes": ["read", "write"]},
    {"name": "reader", "sha256": hashlib.sha256(READER_KEY.encode()).hexdigest(), "scopes": ["read"]},
    {"name": "other", "sha256": hashlib.sha256(OTHER_KEY.encode()).hexdigest(), "scopes": ["read", "write"], "collections": ["other-*"]},
]


@pytest.fixture
async def identity(aiohttp_server: Any) -> Any:
    service = IdentityService()
    server = await aiohttp_server(service.app())
    service.url = str(server.make_url("/identify"))  # type: ignore[attr-defined]
    yield service
    service.release.set()


@pytest.fixture
async def jwks(aiohttp_server: Any) -> Any:
    keys = Jwks()
    server = await aiohttp_server(keys.app())
    keys.url = str(server.make_url("/jwks"))  # type: ignore[attr-defined]
    return keys


def auth_tree(**auth: Any) -> dict[str, Any]:
    return {"auth": {"enabled": True, "api_keys": API_KEYS, **auth}}


@pytest.fixture(params=APP_BACKENDS)
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    return app_overrides(request, request.param)


@pytest.fixture
async def auth_client(aiohttp_client: Any, tmp_path: Path, backend: dict[str, Any]) -> Any:
    async def build(*trees: dict[str, Any]) -> TestClient:
        return await aiohttp_client(create_app(make_config(tmp_path, merge(backend, *trees))))

    return build


def oidc_tree(jwks: Any, **extra: Any) -> dict[str, Any]:
    return auth_tree(oidc_jwks_uri=jwks.url, oidc_issuer=ISSUER, oidc_audience=AUDIENCE, **extra)
