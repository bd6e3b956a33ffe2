"""The OpenAPI document against the routes the app really registers."""

from __future__ import annotations

import configparser
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

import gateway
from gateway.api import collections, docs, openapi
from gateway.app import create_app
from tests.helpers import make_config, s3_overrides

pytestmark = pytest.mark.embedded


def test_every_registered_route_is_documented_and_every_documented_one_registered(tmp_path: Path) -> None:
    # The filesystem backend registers every route (its signed-link route included); S3 all but that one.
    filesystem_app = create_app(make_config(tmp_path))
    s3_app = create_app(make_config(tmp_path, s3_overrides("http://127.0.0.1:9", "k", "s")))
    filesystem, s3 = openapi.registered(filesystem_app), openapi.registered(s3_app)
    documented = {(method, path) for app in (filesystem_app, s3_app) for path, methods in openapi.described(app).items() for method in methods}
    assert filesystem - documented == set(), "routes missing from gateway/openapi.py"
    assert s3 - documented == set(), "routes missing from gateway/openapi.py"
    assert documented - (filesystem | s3) == set(), "documented routes that no app registers"


def test_every_operation_documents_its_errors_with_the_json_error_body(tmp_path: Path) -> None:
    for path, methods in openapi.described(create_app(make_config(tmp_path))).items():
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
    # Aliases are documented once, on their main route.
    served = {(m, each) for p, methods in doc["paths"].items() for m, op in methods.items() for each in (p, *op.get("x-aliases", ()))}
    assert served == openapi.registered(client.app)
    assert "/collections/{collection}/documents/{image_id}" not in doc["paths"] and "/v1/images/" not in doc["paths"]
    aliases = [
        "/collections/{collection}/images/{image_id}/info",
        "/collections/{collection}/documents/{image_id}",
        "/collections/{collection}/documents/{image_id}/info",
        "/collections/{collection}/items/{image_id}",
        "/collections/{collection}/items/{image_id}/info",
    ]
    # ... and each of them with a trailing slash, as the original's Express routing answered.
    main = "/collections/{collection}/images/{image_id}"
    assert doc["paths"][main]["get"]["x-aliases"] == [*aliases, *(path + "/" for path in (main, *aliases))]


@pytest.mark.parametrize("backend", ["filesystem", "s3"])
def test_every_routed_handler_carries_an_operation(tmp_path: Path, backend: str) -> None:
    trees = [s3_overrides("http://127.0.0.1:9", "k", "s")] if backend == "s3" else []
    app = create_app(make_config(tmp_path, *trees))
    missing = [
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and openapi.operation_of(route.handler) is None
    ]
    assert missing == []
    # Public is what the operation says, and only probes, docs, metrics, tus discovery and signed
    # links (downloads, and the filesystem's stand-in for a bucket's upload form) are.
    public = openapi.public_routes(app)
    signed = ["/_objects/{key}", "/_uploads/{key}"] if backend == "filesystem" else []
    assert {p for _, p in public} == {
        "/", "/openapi.json", "/docs", "/docs/{file}", "/gallery", "/gallery/", "/gallery/{name}", "/health", "/ready", "/metrics",
        "/collections/{collection}/tus", "/v1/images/tus", *signed,
    }  # fmt: skip
    assert {m for m, p in public if "/tus" in p} == {"options"}


async def test_the_docs_page_is_self_contained(make_client: Any) -> None:
    client = await make_client()
    response = await client.get("/docs")
    assert response.status == 200
    page = await response.text()
    assert "openapi.json" in page
    assert "http://" not in page and "https://" not in page  # no CDN: nothing is loaded from elsewhere
    # Scripts are files from this origin (Swagger UI's bundle, our init): nothing inline may run.
    policy = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'" and "unsafe" not in response.headers["Content-Security-Policy"]
    assert "<script>" not in page
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "docs-init.js"):
        assert f"docs/{name}" in page
        asset = await client.get(f"/docs/{name}")
        assert asset.status == 200 and len(await asset.read()) > 100, name
    assert (await client.get("/docs/nothing.js")).status == 404


def test_the_docs_page_files_ship_with_the_package() -> None:
    # setup.cfg's package_data must name every file /docs serves, or an installed gateway has none.
    parser = configparser.ConfigParser()
    parser.read(Path(gateway.__file__).parent.parent / "setup.cfg")
    patterns = [p.strip() for p in parser["options.package_data"]["gateway"].split(",")]
    package = Path(gateway.__file__).parent
    for path in [docs.STATIC / "docs.html", *(path for path, _ in docs.FILES.values())]:
        assert path.is_file(), path
        assert any(fnmatch(path.relative_to(package).as_posix(), p) for p in patterns), path


def test_an_alias_must_take_its_main_routes_path_parameters(tmp_path: Path) -> None:
    app = create_app(make_config(tmp_path))
    app.router.add_get("/elsewhere", collections.get_image)
    with pytest.raises(ValueError, match="/elsewhere shares its handler"):
        openapi.document(app)


def test_the_upload_routes_are_described(tmp_path: Path) -> None:
    doc = openapi.document(create_app(make_config(tmp_path)))
    paths = doc["paths"]
    for base in ("/collections/{collection}/tus", "/v1/images/tus"):
        assert set(paths[base]) == {"options", "post"} and paths[base]["options"]["security"] == []
        assert set(paths[base + "/{upload_id}"]) == {"head", "patch", "delete"}
        creation = {p["name"] for p in paths[base]["post"]["parameters"]}
        assert {"Tus-Resumable", "Upload-Length", "Upload-Metadata", "Idempotency-Key"} <= creation
        patch = paths[base + "/{upload_id}"]["patch"]
        assert {"Upload-Offset", "Upload-Checksum", "upload_id"} <= {p["name"] for p in patch["parameters"]}
        assert "application/offset+octet-stream" in patch["requestBody"]["content"]
        assert {"200", "204", "409", "460"} <= set(patch["responses"])
    start = paths["/collections/{collection}/uploads"]["post"]
    assert set(start["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {"filename", "size", "content_type", "properties", "dedupe"}
    assert "201" in start["responses"]
    completion = paths["/collections/{collection}/uploads/{upload_id}/complete"]["post"]
    assert "Idempotency-Key" in {p["name"] for p in completion["parameters"]} and "422" in completion["responses"]
    assert paths["/_uploads/{key}"]["post"]["security"] == []
    for multipart in (paths["/collections/{collection}/images"]["post"], paths["/v1/images"]["post"]):
        assert "Idempotency-Key" in {p["name"] for p in multipart["parameters"]} and "422" in multipart["responses"]
