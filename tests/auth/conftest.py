"""Apps with authentication on, against the stand-in identity service and JWKS (the keys and
config trees are in tests/auth/helpers.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from tests.auth.servers import IdentityService, Jwks
from tests.helpers import APP_BACKENDS, app_overrides, make_config, merge


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


@pytest.fixture(params=APP_BACKENDS)
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    return app_overrides(request, request.param)


@pytest.fixture
async def auth_client(aiohttp_client: Any, tmp_path: Path, backend: dict[str, Any]) -> Any:
    async def build(*trees: dict[str, Any]) -> TestClient:
        return await aiohttp_client(create_app(make_config(tmp_path, merge(backend, *trees))))

    return build
