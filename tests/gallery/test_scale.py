"""The gallery on a large collection: time to the first thumbnail, and a DOM that stays bounded
while infinite scroll follows the listing's Link cursor to the end.

GALLERY_SCALE sets the collection size (default 1,000); the figures are printed (run with -s).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.keys import SERVICE
from tests.helpers import make_config
from tests.gallery.browser import TIMEOUT
from tests.helpers import jpeg

SCALE = int(os.environ.get("GALLERY_SCALE", "1000"))
# Rows in view plus the overscan either side, at 1440x900: far below the collection's size.
MAX_TILES = 120


async def _seed(app: Any, collection: str, count: int) -> None:
    service = app[SERVICE]
    data = [jpeg((256, 192), seed=i) for i in range(16)]
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            await service.upload_bytes(collection, data[i % len(data)], f"img-{i:05d}.jpg", {"n": i, "even": i % 2 == 0})

    await asyncio.gather(*(worker() for _ in range(8)))


async def test_first_thumbnail_and_a_bounded_dom_through_the_whole_collection(chromium: Any, aiohttp_client: Any, tmp_path: Path, backend: dict[str, Any]) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path, backend)))
    started = time.perf_counter()
    await _seed(client.app, "big", SCALE)
    seeded = time.perf_counter() - started
    page = await chromium.new_page(viewport={"width": 1440, "height": 900})
    await page.goto(str(client.make_url("/gallery?collection=big")))
    await page.wait_for_function("() => performance.getEntriesByName('gallery:first-thumbnail').length > 0", timeout=TIMEOUT)
    first = await page.evaluate("() => performance.getEntriesByName('gallery:first-thumbnail')[0].startTime")
    # Where the time goes: the first listing page's answer, and the page's own scripts.
    listed = await page.evaluate("() => performance.getEntriesByType('resource').find((e) => e.name.includes('/images?limit=')).responseEnd")
    assert (await page.inner_text("#summary")).startswith(f"{SCALE:,} images")  # X-Total-Count

    most_tiles = most_nodes = 0
    loaded = 0
    scroll_started = time.perf_counter()
    while True:
        loaded = await page.evaluate("() => window.gallery.grid.items.length")
        tiles, nodes = await page.evaluate("() => [window.gallery.grid.domTiles(), document.getElementsByTagName('*').length]")
        most_tiles, most_nodes = max(most_tiles, tiles), max(most_nodes, nodes)
        if loaded >= SCALE and not await page.evaluate("() => !!window.gallery.state.next"):
            break
        await page.evaluate("() => { const g = document.getElementById('grid'); g.scrollTop = g.scrollHeight; }")
        await page.wait_for_function("(n) => window.gallery.grid.items.length > n || !window.gallery.state.next", arg=loaded, timeout=TIMEOUT)
    scrolled = time.perf_counter() - scroll_started
    assert loaded == SCALE
    # The last tile is really drawn, at the bottom of a list as tall as the whole collection.
    await page.evaluate("() => { const g = document.getElementById('grid'); g.scrollTop = g.scrollHeight; }")
    await page.wait_for_function("(n) => !!document.querySelector(`.tile[aria-posinset='${n}']:not([hidden]) img.loaded`)", arg=SCALE, timeout=TIMEOUT)
    assert most_tiles <= MAX_TILES, most_tiles
    print(
        f"\ngallery at {SCALE} images: seeded in {seeded:.1f}s; first thumbnail {first:.0f} ms after navigation (first page listed at {listed:.0f} ms); "
        f"scrolled to the end ({SCALE // 100} pages) in {scrolled:.1f}s; at most {most_tiles} tiles and {most_nodes} elements in the DOM"
    )
