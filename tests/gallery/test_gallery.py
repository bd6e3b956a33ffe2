"""The gallery in a real browser (Debian's Chromium through Playwright), on embedded and on
MinIO+FerretDB: uploads by drag-and-drop and the picker, thumbnails, filters in the URL, editing,
a conflicting edit, bulk delete, live updates, sign-in, accessibility and screenshots.

The page runs under the CSP the gateway sends: any violation Chromium reports fails the test.
axe-core is vendored under tests/gallery/vendor (pinned, with its licence) and injected with
`add_script_tag` in a context that bypasses the CSP for that one script.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from gateway.app import create_app
from gateway.keys import BLOBS
from tests.auth.helpers import API_KEYS, WRITER_KEY
from tests.helpers import make_config, merge
from tests.gallery.browser import GALLERY_ARTIFACTS, TIMEOUT
from tests.helpers import jpeg, noisy_jpeg

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"

DROP = """([selector, files]) => {
  const transfer = new DataTransfer();
  for (const [name, data] of files) {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
  }
  const target = document.querySelector(selector);
  for (const type of ["dragenter", "dragover", "drop"]) {
    target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
  }
}"""
DECODED = """(count) => {
  const images = [...document.querySelectorAll(".tile:not([hidden]) img")];
  return images.length === count && images.every((img) => img.complete && img.naturalWidth > 0 && img.classList.contains("loaded"));
}"""
TILES = "document.querySelectorAll('.tile:not([hidden])').length"


def tiles(test: str) -> str:
    # A function, not an expression: Playwright would eval an expression, which the CSP forbids.
    return f"() => {TILES} {test}"


class Watch:
    """What the page did: requests made, and every console error (CSP violations among them)."""

    def __init__(self, page: Any):
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.errors: list[str] = []
        self.sockets: list[str] = []
        page.on("request", lambda r: self.requests.append((r.method, r.url, r.headers)))
        page.on("websocket", lambda ws: self.sockets.append(ws.url))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def violations(self) -> list[str]:
        # Only the answers the test provokes on purpose: the refused key (401), the conflicting
        # edit (412) and the file that is no image (415). The page probes for nothing, so no
        # 404 or 405 is excused.
        expected = tuple(f"status of {s} " for s in (401, 412, 415))
        return [e for e in self.errors if not (e.startswith("Failed to load resource") and any(x in e for x in expected))]

    def api(self, method: str, path: str) -> list[str]:
        """Path and query of each request with this method to `path` (or under it, when `path` ends in /)."""
        found = [urlsplit(url) for m, url, _ in self.requests if m == method]
        return [f"{u.path}?{u.query}" if u.query else u.path for u in found if u.path == path or (path.endswith("/") and u.path.startswith(path))]


async def api_doc(client: Any, collection: str, ident: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    response = await client.get(f"/collections/{collection}/images/{ident}", headers=headers or {})
    return response.status, await response.json()


async def object_keys(client: Any, collection: str) -> set[str]:
    """Every object of the collection, its images' renditions (thumbnails the grid drew) included."""
    return {blob.key async for blob in client.app[BLOBS].list(f"{collection}/")}


def originals(keys: set[str]) -> set[str]:
    return {key for key in keys if "/_renditions/" not in key}


async def axe_violations(browser: Any, url: str, prepare: Any = None) -> list[dict[str, Any]]:
    """Serious and critical axe-core findings on the page at `url` (after `prepare(page)`)."""
    context = await browser.new_context(bypass_csp=True, viewport={"width": 1440, "height": 900})
    try:
        page = await context.new_page()
        await page.goto(url)
        await page.wait_for_function(tiles("> 0"), timeout=TIMEOUT)
        if prepare is not None:
            await prepare(page)
        await page.add_script_tag(path=str(AXE))
        result = await page.evaluate("async () => (await axe.run(document, { resultTypes: ['violations'] })).violations")
        return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]} for v in result if v["impact"] in ("serious", "critical")]
    finally:
        await context.close()


async def test_gallery_upload_browse_edit_delete_and_live(chromium: Any, aiohttp_client: Any, tmp_path: Path, backend: dict[str, Any]) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path, backend)))
    base = str(client.make_url("/gallery"))
    collection = "trips"
    page = await chromium.new_page(viewport={"width": 1440, "height": 900})
    watch = Watch(page)
    await page.goto(f"{base}?collection={collection}")
    csp = (await client.get("/gallery")).headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp

    # Three images dropped on the grid, and a file that is no image, with a property for the batch.
    files = [(f"alps-{i}.jpg", base64.b64encode(jpeg((640, 480), seed=40 * i + 7)).decode()) for i in range(3)]
    files.append(("notes.jpg", base64.b64encode(b"shopping list: bread, milk\n" * 40).decode()))
    await page.evaluate(DROP, ["#grid", files])
    await page.get_by_role("button", name="Upload 4 files").wait_for(timeout=TIMEOUT)
    await page.get_by_text("Properties for this batch").click()
    await page.locator("#batch-props").get_by_role("button", name="Add property").click()
    await page.get_by_label("Batch property 1 key").fill("trip")
    await page.get_by_label("Batch property 1 value").fill("alps")
    await page.get_by_role("button", name="Upload 4 files").click()
    await page.wait_for_function("() => document.querySelectorAll('.upload-item[data-state=done]').length === 3", timeout=TIMEOUT)
    refused = page.locator(".upload-item[data-state=refused]")
    await refused.wait_for(timeout=TIMEOUT)
    assert "notes.jpg" in await refused.inner_text() and "Refused: not an image" in await refused.inner_text()

    # The small files went as one multipart POST each, dedupe on (the box is checked by default).
    images = f"/collections/{collection}/images"
    assert watch.api("POST", images) == [f"{images}?dedupe=true"] * len(files), watch.requests
    assert {await item.get_attribute("data-via") for item in await page.locator(".upload-item").all()} == {"multipart"}

    # One large image from the picker, without the batch property: resumable over tus, in
    # chunks of 8 MiB (two PATCHes for 12 MB), and no multipart POST for it.
    big = noisy_jpeg((3800, 2900))
    assert len(big) >= 12_000_000
    await page.get_by_label("Remove batch property 1").click()
    await page.set_input_files("#file-input", files=[{"name": "panorama.jpg", "mimeType": "image/jpeg", "buffer": big}])
    await page.get_by_role("button", name="Upload 1 file").click()
    await page.wait_for_function("() => document.querySelectorAll('.upload-item[data-state=done]').length === 4", timeout=60_000)
    assert await page.get_attribute(".upload-item:last-child", "data-via") == "tus"
    assert watch.api("POST", f"/collections/{collection}/tus") == [f"/collections/{collection}/tus"]
    assert len(watch.api("PATCH", f"/collections/{collection}/tus/")) == 2
    assert len(watch.api("POST", images)) == len(files)
    # Nothing was asked of the server to learn what it can do.
    assert not watch.api("OPTIONS", "/") and not watch.api("GET", "/openapi.json")
    await page.get_by_role("button", name="Close upload").click()

    # Four thumbnails in the grid, all decoded; the listing agrees.
    await page.wait_for_function(DECODED, arg=4, timeout=TIMEOUT)
    listing = await (await client.get(f"/collections/{collection}/images")).json()
    assert sorted(d["image"] for d in listing) == ["alps-0.jpg", "alps-1.jpg", "alps-2.jpg", "panorama.jpg"]
    assert all(d["properties"] == {"trip": "alps"} for d in listing if d["image"] != "panorama.jpg")
    await page.screenshot(path=str(GALLERY_ARTIFACTS / "grid-1440x900.png"))

    # Filter by the property; the URL carries the view, and a reload shows the same.
    await page.get_by_label("Filter by property").fill("trip")
    await page.get_by_label("Value").fill("alps")
    await page.get_by_role("button", name="Add filter").click()
    await page.wait_for_function(tiles("=== 3"), timeout=TIMEOUT)
    assert "filter=" in page.url and "trip" in page.url
    await page.reload()
    await page.wait_for_function(DECODED, arg=3, timeout=TIMEOUT)
    assert await page.get_by_role("button", name='Remove filter: trip is "alps"').count() == 1

    # What a view costs, in a tab of its own (the link shared): each of these API requests once
    # and no other (no probe of what the server can do); besides them only the page's own files
    # and the thumbnails.
    shared = await chromium.new_page(viewport={"width": 1440, "height": 900})
    other = Watch(shared)
    await shared.goto(page.url)
    await shared.wait_for_function(DECODED, arg=3, timeout=TIMEOUT)
    await shared.wait_for_function("() => [...document.querySelectorAll('#filter-keys option')].map((o) => o.value).join() === 'trip'", timeout=TIMEOUT)
    gateway = str(client.make_url("/"))
    asked = [(m, urlsplit(u).path) for m, u, _ in other.requests if u.startswith(gateway)]
    of_api = sorted((m, p) for m, p in asked if not p.startswith(("/gallery", "/_objects/")) and not p.endswith("/image"))
    assert of_api == [("GET", path) for path in ("/", "/collections", f"/collections/{collection}", f"/collections/{collection}/fields", images)], of_api
    assert other.violations() == []
    await shared.close()

    # Open one, add a typed property, save: the API shows it.
    first = page.locator(".tile:not([hidden])").first
    ident = (await first.get_attribute("id")).removeprefix("tile-")
    await first.click()
    detail = page.get_by_role("dialog", name="alps-")
    await detail.wait_for(timeout=TIMEOUT)
    await detail.get_by_role("button", name="Add property").click()
    await page.get_by_label("Property 2 key").fill("rating")
    await page.get_by_label("Property 2 type").select_option("number")
    await page.get_by_label("Property 2 value").fill("5")
    await detail.get_by_role("button", name="Save properties").click()
    await detail.get_by_text("Saved.").wait_for(timeout=TIMEOUT)
    status, doc = await api_doc(client, collection, ident)
    assert status == 200 and doc["properties"] == {"trip": "alps", "rating": 5}

    # Someone else changes it while this edit is open (a live update does not overwrite an
    # edit in progress): the save answers 412 and the page shows their values.
    await page.get_by_label("Property 2 value").fill("4")
    changed = await client.patch(f"/collections/{collection}/images/{ident}", json={"rating": 1, "by": "someone"})
    assert changed.status == 200
    await detail.get_by_role("button", name="Save properties").click()
    conflict = detail.locator("#detail-conflict")
    await conflict.wait_for(timeout=TIMEOUT)
    assert "someone" in await conflict.inner_text()
    assert (await api_doc(client, collection, ident))[1]["properties"]["rating"] == 1
    await conflict.get_by_role("button", name="Save mine over theirs").click()
    await detail.get_by_text("Saved.").wait_for(timeout=TIMEOUT)
    assert (await api_doc(client, collection, ident))[1]["properties"] == {"trip": "alps", "rating": 4}
    await page.keyboard.press("Escape")
    await detail.wait_for(state="hidden", timeout=TIMEOUT)

    # Keyboard: arrows move between tiles, Enter opens, Esc closes.
    await page.locator(f"#tile-{ident}").focus()
    await page.keyboard.press("ArrowRight")
    focused = await page.evaluate("() => document.activeElement.id")
    assert focused.startswith("tile-") and focused != f"tile-{ident}"
    await page.keyboard.press("Enter")
    await page.get_by_role("dialog", name="alps-").wait_for(timeout=TIMEOUT)
    await page.keyboard.press("Escape")
    await page.get_by_role("dialog", name="alps-").wait_for(state="hidden", timeout=TIMEOUT)

    # Select two; a bulk property change is one PATCH by filter (their ids as `_id` `$in`).
    before = await object_keys(client, collection)
    await page.get_by_role("button", name="Select", exact=True).click()
    shown = page.locator(".tile:not([hidden])")
    doomed = [(await shown.nth(i).get_attribute("id")).removeprefix("tile-") for i in (1, 2)]
    await shown.nth(1).click()
    await shown.nth(2).click()
    await page.get_by_text("2 images selected").wait_for(timeout=TIMEOUT)
    await page.get_by_role("button", name="Change properties…").click()
    bulk = page.get_by_role("dialog", name="Change properties")
    await bulk.get_by_label("Bulk property 1 key").fill("picked")
    await bulk.get_by_label("Bulk property 1 value").fill("yes")
    await bulk.get_by_label("Remove these keys").fill("trip")
    await bulk.get_by_role("button", name="Apply").click()
    await bulk.wait_for(state="hidden", timeout=TIMEOUT)
    for picked in doomed:
        assert (await api_doc(client, collection, picked))[1]["properties"] == {"picked": "yes"}
    assert (await api_doc(client, collection, ident))[1]["properties"] == {"trip": "alps", "rating": 4}
    by_filter = {"filter": [json.dumps({"_id": {"$in": doomed}}, separators=(",", ":"))]}
    patches = watch.api("PATCH", images)
    assert len(patches) == 1 and parse_qs(urlsplit(patches[0]).query) == by_filter, patches

    # Bulk delete the same two: one DELETE by filter; gone from the grid, the API and the bucket.
    await page.get_by_role("button", name="Delete…").click()
    await page.get_by_role("dialog", name="Delete 2 images?").get_by_role("button", name="Delete").click()
    await page.wait_for_function(tiles("=== 1"), timeout=TIMEOUT)
    deletes = watch.api("DELETE", f"/collections/{collection}/")
    assert len(deletes) == 1 and deletes[0].startswith(f"{images}?") and parse_qs(urlsplit(deletes[0]).query) == by_filter, deletes
    for gone in doomed:
        assert (await api_doc(client, collection, gone))[0] == 404
    after = await object_keys(client, collection)
    # Their originals and every rendition of them are gone; the other images' objects stay (new thumbnails may join them).
    assert len(originals(before)) - len(originals(after)) == 2 and not any(gone in key for key in after for gone in doomed)
    assert {key for key in before if not any(gone in key for gone in doomed)} <= after

    # Another client uploads: the image appears without a reload (the events WebSocket).
    await page.get_by_role("button", name='Remove filter: trip is "alps"').click()
    await page.wait_for_function(tiles("=== 2"), timeout=TIMEOUT)
    await page.wait_for_function("() => document.body.dataset.live === 'socket'", timeout=TIMEOUT)
    form = aiohttp.FormData()
    form.add_field("image", jpeg((300, 200), seed=99), filename="from-elsewhere.jpg", content_type="image/jpeg")
    assert (await client.post(f"/collections/{collection}/images", data=form)).status == 200
    await page.get_by_role("option", name="from-elsewhere.jpg").wait_for(timeout=TIMEOUT)
    await page.wait_for_function(DECODED, arg=3, timeout=TIMEOUT)

    await page.set_viewport_size({"width": 390, "height": 844})
    await page.wait_for_function(DECODED, arg=3, timeout=TIMEOUT)
    await page.screenshot(path=str(GALLERY_ARTIFACTS / "grid-390x844.png"))
    assert watch.violations() == []


async def test_gallery_has_no_serious_accessibility_violations(chromium: Any, aiohttp_client: Any, tmp_path: Path, backend: dict[str, Any]) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path, backend)))
    for i in range(3):
        form = aiohttp.FormData()
        form.add_field("image", jpeg((200, 150), seed=i), filename=f"a11y-{i}.jpg", content_type="image/jpeg")
        form.add_field("json", json.dumps({"n": i, "kind": "test"}))
        assert (await client.post("/collections/access/images", data=form)).status == 200
    url = str(client.make_url("/gallery?collection=access"))

    async def open_detail(page: Any) -> None:
        await page.locator(".tile:not([hidden])").first.click()
        await page.get_by_role("dialog", name="a11y-").wait_for(timeout=TIMEOUT)

    async def open_upload(page: Any) -> None:
        await page.get_by_role("button", name="Upload", exact=True).click()
        await page.get_by_role("dialog", name="Upload images").wait_for(timeout=TIMEOUT)

    for prepare in (None, open_detail, open_upload):
        assert await axe_violations(chromium, url, prepare) == [], prepare

    # The dark scheme and a phone's width are checked too.
    context = await chromium.new_context(bypass_csp=True, viewport={"width": 390, "height": 844}, color_scheme="dark", reduced_motion="reduce")
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function(DECODED, arg=3, timeout=TIMEOUT)
    await page.screenshot(path=str(GALLERY_ARTIFACTS / "dark-390x844.png"))
    await page.add_script_tag(path=str(AXE))
    found = await page.evaluate("async () => (await axe.run(document)).violations.filter((v) => ['serious', 'critical'].includes(v.impact)).map((v) => v.id)")
    await context.close()
    assert found == []


async def test_gallery_signs_in_with_an_api_key(chromium: Any, aiohttp_client: Any, tmp_path: Path, backend: dict[str, Any]) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path, merge(backend, {"auth": {"enabled": True, "api_keys": API_KEYS}}))))
    key = {"X-API-Key": WRITER_KEY}
    form = aiohttp.FormData()
    private = jpeg((320, 240), seed=5)
    form.add_field("image", private, filename="private.jpg", content_type="image/jpeg")
    assert (await client.post("/collections/vault/images", data=form, headers=key)).status == 200
    page = await chromium.new_page(viewport={"width": 1440, "height": 900})
    watch = Watch(page)
    await page.goto(str(client.make_url("/gallery?collection=vault")))

    sign_in = page.get_by_role("dialog", name="Sign in")
    await sign_in.wait_for(timeout=TIMEOUT)
    await sign_in.get_by_label("Key or token").fill("not-the-key")
    await sign_in.get_by_role("button", name="Sign in").click()
    await sign_in.get_by_text("The server refused your credentials").wait_for(timeout=TIMEOUT)
    await sign_in.get_by_label("Key or token").fill(WRITER_KEY)
    await sign_in.get_by_role("button", name="Sign in").click()
    await sign_in.wait_for(state="hidden", timeout=TIMEOUT)

    # The image's bytes need the header too: drawn from a blob fetched with it.
    await page.wait_for_function(DECODED, arg=1, timeout=TIMEOUT)
    await page.get_by_text("Signed in with an API key").wait_for(timeout=TIMEOUT)
    assert await page.evaluate("() => sessionStorage.length") == 1

    # An upload from the page carries the key; the same bytes again are a duplicate the server
    # does not store again (`dedupe=true`), and the page says so.
    files = [("signed.jpg", base64.b64encode(jpeg((200, 200), seed=8)).decode()), ("again.jpg", base64.b64encode(private).decode())]
    await page.evaluate(DROP, ["#grid", files])
    await page.get_by_role("button", name="Upload 2 files").click()
    await page.wait_for_function("() => document.querySelectorAll('.upload-item[data-state=done], .upload-item[data-state=duplicate]').length === 2", timeout=TIMEOUT)
    assert await page.locator(".upload-item", has_text="signed.jpg").get_attribute("data-state") == "done"
    assert await page.locator(".upload-item", has_text="again.jpg").get_attribute("data-state") == "duplicate"
    assert watch.api("POST", "/collections/vault/images") == ["/collections/vault/images?dedupe=true"] * 2
    duplicate = await page.locator(".upload-item", has_text="again.jpg").inner_text()
    assert "Duplicate" in duplicate and "“private.jpg”" in duplicate and "not stored again" in duplicate, duplicate
    await page.get_by_role("button", name="Close upload").click()
    listing = await (await client.get("/collections/vault/images", headers=key)).json()
    names = sorted(d["image"] for d in listing)
    assert names == ["private.jpg", "signed.jpg"]
    await page.wait_for_function(DECODED, arg=len(names), timeout=TIMEOUT)

    # Never in a URL; sent as the header on the API's requests.
    assert not any(WRITER_KEY in url for _, url, _ in watch.requests)
    assert any(headers.get("x-api-key") == WRITER_KEY for _, url, headers in watch.requests if "/collections/vault/images" in url)
    await page.screenshot(path=str(GALLERY_ARTIFACTS / "signed-in-1440x900.png"))
    # The live feed carries the key as a WebSocket subprotocol (a browser sets no headers on a
    # socket), never in its URL: an image another client uploads appears without polling.
    await page.wait_for_function("() => document.body.dataset.live === 'socket'", timeout=TIMEOUT)
    form = aiohttp.FormData()
    form.add_field("image", jpeg((240, 200), seed=9), filename="elsewhere.jpg", content_type="image/jpeg")
    assert (await client.post("/collections/vault/images", data=form, headers=key)).status == 200
    await page.wait_for_function(DECODED, arg=len(names) + 1, timeout=TIMEOUT)
    assert await page.evaluate("() => document.body.dataset.live") == "socket"
    assert watch.sockets and not any(WRITER_KEY in url for url in [*watch.sockets, *(url for _, url, _ in watch.requests)])
    assert watch.violations() == []


@pytest.mark.embedded
async def test_files_dropped_before_the_page_has_booted_go_to_the_url_collection(chromium: Any, aiohttp_client: Any, tmp_path: Path) -> None:
    """The page learns the collection from its URL at once, not after `GET /` answers: a drop
    that quick (here `GET /` is held back) still uploads into it."""
    client = await aiohttp_client(create_app(make_config(tmp_path)))
    page = await chromium.new_page()
    release = asyncio.Event()

    async def hold(route: Any) -> None:
        await release.wait()
        await route.continue_()

    await page.route(str(client.make_url("/")), hold)
    await page.goto(str(client.make_url("/gallery?collection=early")))
    try:
        await page.evaluate(DROP, ["#grid", [("first.jpg", base64.b64encode(jpeg((64, 48), seed=3)).decode())]])
        await page.get_by_role("button", name="Upload 1 file").click()
        await page.wait_for_function("() => document.querySelectorAll('.upload-item[data-state=done]').length === 1", timeout=TIMEOUT)
    finally:
        release.set()
    assert [d["image"] for d in await (await client.get("/collections/early/images")).json()] == ["first.jpg"]
