"""A real browser (Debian's Chromium, driven by Playwright without a browser download) follows a
gateway download link to MinIO and decodes the image, then finds the object in the MinIO console;
and it uses the API docs (Swagger UI at /docs) under the page's CSP, "Try it out" included.

Screenshots go to test-artifacts/ (git-ignored). Chromium comes from `make browser`; without it
the test skips, or fails under GATEWAY_REQUIRE_PEERS=1 as the peers do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.keys import CONFIG
from tests import peers
from tests.api.test_collections import upload
from tests.helpers import REQUIRE_PEERS, jpeg, make_config, s3_overrides

CHROMIUM = Path(os.environ.get("GATEWAY_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _missing(message: str) -> None:
    if REQUIRE_PEERS:
        pytest.fail(message + "; GATEWAY_REQUIRE_PEERS=1 forbids skipping", pytrace=False)
    pytest.skip(message)


@pytest.fixture
async def browser() -> Any:
    if not CHROMIUM.is_file():
        _missing(f"{CHROMIUM} is not installed: run `make browser` (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[test]'")
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.mark.peers
async def test_browser_opens_a_download_link_and_finds_the_object_in_the_console(
    browser: Any, minio: peers.MinioServer, aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path, s3_overrides(minio.endpoint, minio.access_key, minio.secret_key))))
    bucket = client.app[CONFIG].storage.s3.bucket
    doc = await upload(client, "gallery", jpeg((120, 80), seed=3), filename="sunset.jpg")
    # Tall enough that the console's object panel shows the metadata (Content-Type) in the shot.
    page = await browser.new_page(viewport={"width": 1280, "height": 1400})

    # The gateway answers 302 to a presigned MinIO URL; the browser follows it and decodes.
    response = await page.goto(str(client.make_url(f"/collections/gallery/images/{doc['id']}/image")))
    assert response is not None and response.status == 200
    assert page.url.startswith(minio.endpoint + f"/{bucket}/gallery/{doc['id']}.jpg?")
    assert await page.evaluate("document.images.length && document.images[0].complete")
    assert await page.evaluate("document.images[0].naturalWidth") == 120
    await page.screenshot(path=str(ARTIFACTS / "browser-image.png"))

    await page.goto(minio.console_url + "/login")
    await page.fill("#accessKey", minio.access_key)
    await page.fill("#secretKey", minio.secret_key)
    await page.click("#do-login")
    await page.wait_for_url("**/browser**", timeout=20_000)
    await page.goto(f"{minio.console_url}/browser/{bucket}")
    # This console build greets a new session with a licence notice over the page.
    acknowledge = page.get_by_role("button", name="Acknowledge")
    await page.get_by_text("gallery", exact=True).first.wait_for(timeout=20_000)
    if await acknowledge.count():
        await acknowledge.click()
    await page.get_by_text("gallery", exact=True).first.click()
    name = f"{doc['id']}.jpg"
    await page.get_by_text(name, exact=True).first.click()
    await page.wait_for_function("text => document.body.innerText.includes(text)", arg="image/jpeg", timeout=20_000)
    await page.screenshot(path=str(ARTIFACTS / "console-object.png"), full_page=True)
    shown = await page.inner_text("body")
    assert f"{bucket}/gallery/{name}" in shown
    assert "Content-Type" in shown and "image/jpeg" in shown


async def test_the_docs_page_lists_the_operations_and_tries_one_out(browser: Any, client: Any) -> None:
    await upload(client, "gallery", jpeg((40, 30), seed=4), filename="a.jpg")
    page = await browser.new_page(viewport={"width": 1280, "height": 1600})
    # Anything the page's CSP blocks (an inline script or style, a request elsewhere) is reported here.
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", lambda answer: problems.append(f"{answer.status} {answer.url}") if answer.status >= 400 else None)
    response = await page.goto(str(client.make_url("/docs")))
    assert response is not None and response.status == 200

    await page.locator(".opblock").first.wait_for(timeout=20_000)
    paths = await page.locator(".opblock-summary-path").evaluate_all("nodes => nodes.map(n => n.dataset.path)")
    doc = await (await client.get("/openapi.json")).json()
    assert sorted(paths) == sorted(p for p, methods in doc["paths"].items() for _ in methods)
    # Aliases are not operations of their own; they are named on their main route.
    assert "/collections/{collection}/documents" not in paths and "/v1/images/" not in paths

    listing = page.locator("#operations-collections-get_collections")
    await listing.locator(".opblock-summary-control").click()
    await listing.locator("button.try-out__btn").click()
    await listing.locator("button.execute").click()
    status = listing.locator(".live-responses-table tr.response .response-col_status").first
    await status.wait_for(timeout=20_000)
    assert (await status.inner_text()).strip() == "200"
    assert '"gallery"' in await listing.locator(".live-responses-table tr.response .response-col_description").first.inner_text()
    await page.screenshot(path=str(ARTIFACTS / "docs-try-it-out.png"), full_page=False)
    assert problems == []
