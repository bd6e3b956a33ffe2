"""The gallery's routes: its files, their types, the page's CSP, and no way out of the package."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.api import gallery
from gateway.keys import CONFIG
from tests.auth.helpers import API_KEYS


async def test_the_page_and_its_files_are_served_with_their_types(client: TestClient) -> None:
    for path in ("/gallery", "/gallery/"):
        page = await client.get(path)
        assert page.status == 200 and page.content_type == "text/html"
        assert page.headers["Cache-Control"] == "no-cache"
    html = await page.text()
    # Every script and style sheet the page names is one of its own files, served as such.
    referenced = re.findall(r'(?:src|href)="(/gallery/[^"]+)"', html)
    assert {"/gallery/js/main.js", "/gallery/gallery.css"} <= set(referenced)
    for path in referenced:
        response = await client.get(path)
        assert response.status == 200, path
    assert (await client.get("/gallery/js/main.js")).content_type == "text/javascript"
    assert (await client.get("/gallery/gallery.css")).content_type == "text/css"
    tus = await client.get("/gallery/vendor/tus-js-client-4.3.1/tus.min.js")
    assert tus.status == 200 and (await client.get("/gallery/vendor/tus-js-client-4.3.1/LICENSE")).status == 200
    # No inline script or style anywhere in the page: the CSP would refuse them.
    assert "<style" not in html and " style=" not in html
    assert all(tag.endswith("></script>") for tag in re.findall(r"<script[^>]*>[^<]*</script>", html))


async def test_the_page_policy_allows_only_its_own_code(client: TestClient) -> None:
    policy = (await client.get("/gallery")).headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["form-action"] == "'none'"
    assert "unsafe" not in policy
    # Downloads redirect to the object store on S3: images may come from there, nowhere else.
    storage = client.app[CONFIG].storage
    if storage.backend == "filesystem":
        assert directives["img-src"] == "'self' blob:"
    else:
        endpoint = storage.s3.public_endpoint_url or storage.s3.endpoint_url
        assert directives["img-src"] == f"'self' blob: {endpoint}"
        assert directives["connect-src"].endswith(f" {endpoint}")
    assert directives["connect-src"].startswith(f"'self' ws://{client.server.host}:{client.server.port}")
    # The API's answers keep their own, stricter policy.
    assert (await client.get("/collections")).headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


async def test_only_the_packaged_files_are_reachable(client: TestClient) -> None:
    for path in ("/gallery/nope.js", "/gallery/../setup.cfg", "/gallery/%2e%2e/app.py", "/gallery/js/../../api/gallery.py", "/gallery/index.html"):
        response = await client.get(path)
        assert response.status == 404, path
        if response.content_type == "application/json":
            assert (await response.json())["error"]["code"] == "not_found"
    assert all(Path(p).resolve().is_relative_to(gallery.STATIC) for p in gallery.FILES.values())


async def test_the_page_needs_no_credentials_but_the_api_does(make_client: Any) -> None:
    client = await make_client({"auth": {"enabled": True, "api_keys": API_KEYS}})
    assert (await client.get("/gallery")).status == 200
    assert (await client.get("/gallery/js/api.js")).status == 200
    assert (await client.get("/collections")).status == 401

