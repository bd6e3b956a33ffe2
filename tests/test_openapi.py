"""The OpenAPI document against the routes the app really registers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.api import openapi
from gateway.app import create_app
from tests.helpers import make_config, s3_overrides

pytestmark = pytest.mark.embedded


def test_every_registered_route_is_documented_and_every_documented_one_registered(tmp_path: Path) -> None:
    # The filesystem backend registers every route (its signed-link route included); S3 all but that one.
    filesystem = openapi.registered(create_app(make_config(tmp_path)))
    s3 = openapi.registered(create_app(make_config(tmp_path, s3_overrides("http://127.0.0.1:9", "k", "s"))))
    documented = {(method, path) for path, methods in openapi.described().items() for method in methods}
    assert filesystem - documented == set(), "routes missing from gateway/openapi.py"
    assert s3 - documented == set(), "routes missing from gateway/openapi.py"
    assert documented - (filesystem | s3) == set(), "documented routes that no app registers"


def test_every_operation_documents_its_errors_with_the_json_error_body() -> None:
    for path, methods in openapi.described().items():
        for method, op in methods.items():
            statuses = {int(s) for s in op["responses"] if s.isdigit()}
            assert {400, 405} <= statuses, (method, path)
            assert op.get("security") == [] or {401, 403} <= statuses, (method, path)
            assert all(s in openapi.ERROR_STATUSES for s in statuses if s >= 400), (method, path)
            templated = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert templated == set(part[1:-1] for part in path.split("/") if part.startswith("{")), (method, path)


async def test_the_document_is_served_and_lists_only_this_apps_routes(make_client: Any) -> None:
    client = await make_client()
    response = await client.get("/openapi.json")
    assert response.status == 200
    doc = await response.json()
    assert doc["openapi"] == "3.1.0"
    assert "/_objects/{key}" in doc["paths"]
    assert doc["components"]["responses"]["E404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    served = {(m, p) for p, methods in doc["paths"].items() for m in methods}
    assert served == openapi.registered(client.app)


async def test_the_docs_page_is_self_contained(make_client: Any) -> None:
    client = await make_client()
    response = await client.get("/docs")
    assert response.status == 200
    page = await response.text()
    assert "openapi.json" in page
    assert "http://" not in page and "https://" not in page  # no CDN: nothing is loaded from elsewhere
    assert "script-src 'sha256-" in response.headers["Content-Security-Policy"]
