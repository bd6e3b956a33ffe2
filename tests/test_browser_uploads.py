"""Uploads from a real browser (Debian's Chromium, driven by Playwright) to the gateway on MinIO:
tus-js-client (the copy the gallery vendors, served from /gallery/vendor/) sends a 12 MB image in 5 MiB chunks, the network
is cut after the first chunk, a new page load resumes from the stored upload URL, and the image
is downloaded and compared; a direct upload posts the presigned form to MinIO with plain
`fetch`, then completes, and a file that is no image is refused with nothing left.

The test page and the image are served by test routes added to the app, so the page is the
gateway's origin, as a web app behind the same host would be.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.keys import SERVICE
from tests import peers
from tests import test_browser
from tests.api.test_collections import fetch_object
from tests.api.test_tus import large_image
from tests.faults import assert_invariants, object_keys
from tests.helpers import make_config, s3_overrides

pytestmark = pytest.mark.peers
browser = test_browser.browser
TUS_SCRIPT = "/gallery/vendor/tus-js-client-4.3.1/tus.min.js"
MiB = 1024 * 1024

PAGE = """<!doctype html><html><head><meta charset="utf-8"><script src="%s"></script></head><body><script>
async function image() { return await (await fetch("/test/image.jpg")).blob(); }

// Resolves with what happened: the upload URL is kept in localStorage, as an app would keep it.
window.tusUpload = async (resume) => {
  const file = await image();
  return await new Promise((resolve) => {
    const options = {
      endpoint: "/collections/browser/tus",
      chunkSize: 5 * 1024 * 1024,
      retryDelays: null,
      metadata: { filename: "big.jpg", content_type: "image/jpeg" },
      onAfterResponse: (req, res) => { window.lastStatus = res.getStatus(); },
      onError: (error) => resolve({ ok: false, error: String(error), url: upload.url }),
      onSuccess: (payload) => resolve({ ok: true, url: upload.url, body: payload.lastResponse.getBody() }),
    };
    if (resume) options.uploadUrl = localStorage.getItem("tus-url");
    const upload = new tus.Upload(file, options);
    options.onUploadUrlAvailable = () => localStorage.setItem("tus-url", upload.url);
    upload.options.onUploadUrlAvailable = options.onUploadUrlAvailable;
    upload.start();
  });
};

window.directUpload = async (kind) => {
  const file = kind === "image" ? await image() : new Blob(["not an image, only text ".repeat(200)], { type: "image/jpeg" });
  const started = await (await fetch("/collections/browser/uploads", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ filename: "direct.jpg", size: file.size, content_type: "image/jpeg" }),
  })).json();
  const form = new FormData();
  for (const [name, value] of Object.entries(started.fields)) form.append(name, value);
  form.append("file", file, "direct.jpg");
  const sent = await fetch(started.url, { method: "POST", body: form });
  const done = await fetch(started.complete_url, { method: "POST" });
  return { bucket: started.url, sent: sent.status, status: done.status, body: await done.json() };
};
</script></body></html>""" % TUS_SCRIPT


async def gateway_with_test_page(aiohttp_client: Any, minio: peers.MinioServer, tmp_path: Path) -> Any:
    app = create_app(make_config(tmp_path, s3_overrides(minio.endpoint, minio.access_key, minio.secret_key)))
    image = large_image()

    async def page(request: web.Request) -> web.Response:
        # The gateway's own policy loads nothing; this page runs its script and talks to MinIO.
        policy = f"default-src 'self'; script-src 'self' 'unsafe-inline'; connect-src 'self' {minio.endpoint}"
        return web.Response(text=PAGE, content_type="text/html", headers={"Content-Security-Policy": policy})

    async def picture(request: web.Request) -> web.Response:
        return web.Response(body=image, content_type="image/jpeg")

    app.router.add_get("/test/page", page)
    app.router.add_get("/test/image.jpg", picture)
    return await aiohttp_client(app)


async def test_tus_js_client_resumes_after_the_network_is_cut(browser: Any, minio: peers.MinioServer, aiohttp_client: Any, tmp_path: Path) -> None:
    client = await gateway_with_test_page(aiohttp_client, minio, tmp_path)
    image = large_image()
    assert len(image) > 2 * 5 * MiB
    context = await browser.new_context()
    page = await context.new_page()
    patches = 0

    async def cut_after_the_first_chunk(route: Any) -> None:
        nonlocal patches
        if route.request.method == "PATCH":
            patches += 1
            if patches > 1:
                await route.abort("internetdisconnected")
                return
        await route.continue_()

    await page.route("**/collections/browser/tus/**", cut_after_the_first_chunk)
    await page.goto(str(client.make_url("/test/page")))
    cut = await page.evaluate("tusUpload(false)")
    assert cut["ok"] is False and patches == 2, cut
    head = await client.head(cut["url"].replace(str(client.make_url("")), ""), headers={"Tus-Resumable": "1.0.0"})
    assert head.headers["Upload-Offset"] == str(5 * MiB)  # the first chunk is stored

    # A new page load, with the network back: resumed from the URL the app kept.
    await page.close()
    resumed = await context.new_page()
    await resumed.goto(str(client.make_url("/test/page")))
    done = await resumed.evaluate("tusUpload(true)")
    assert done["ok"] is True and done["url"] == cut["url"], done
    doc = json.loads(done["body"])
    assert doc["sha256"] == hashlib.sha256(image).hexdigest()
    stored, _ = await fetch_object(client, doc)
    assert stored == image
    paths, keys = await assert_invariants(client.app[SERVICE])
    assert paths == keys == [doc["path"]]
    await context.close()


async def test_direct_upload_from_the_browser_to_minio_and_a_refused_one(browser: Any, minio: peers.MinioServer, aiohttp_client: Any, tmp_path: Path) -> None:
    client = await gateway_with_test_page(aiohttp_client, minio, tmp_path)
    page = await browser.new_page()
    await page.goto(str(client.make_url("/test/page")))
    sent = await page.evaluate("directUpload('image')")
    assert sent["bucket"].startswith(minio.endpoint)  # the bytes went to MinIO, not through us
    assert sent["sent"] == 204 and sent["status"] == 200, sent
    assert sent["body"]["sha256"] == hashlib.sha256(large_image()).hexdigest()
    refused = await page.evaluate("directUpload('text')")
    assert refused["sent"] == 204 and refused["status"] == 415, refused
    assert refused["body"]["error"]["code"] == "unsupported_image"
    assert await object_keys(client.app[SERVICE].blobs) == [sent["body"]["path"]]
    assert await client.app[SERVICE].meta.pending_uploads() != []  # the image's, done; the refused one is gone
    assert [u.image_id for u in await client.app[SERVICE].meta.pending_uploads()] == [sent["body"]["id"]]
