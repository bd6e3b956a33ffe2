"""The gallery in Chromium: time to the first thumbnail on a collection of 1,000 images, and how
the page behaves as it scrolls through 10,000.

The gateway runs in this process on the embedded stores (disk + SQLite); images are small JPEGs
uploaded through the API, each distinct. The browser is Debian's Chromium driven by Playwright
(as the tests do), each page load in a fresh context, so nothing comes from the browser's cache.

- first thumbnail: navigation start to the first tile whose thumbnail has decoded, cold (the
  `thumb` renditions are rendered on first request) and warm (already rendered: a redirect to a
  stored rendition); and to the whole first screen decoded.
- 10,000: scroll to the end page by page (the grid asks for 100 documents at a time, following
  the listing's cursor); after each page, elements in the DOM, tiles in the DOM and the JS heap;
  the longest task (PerformanceObserver `longtask`) while scrolling, and how many tasks took
  50 ms or more (one long task can be a garbage collection; many are the page's own work, as
  one forced layout per tile was); the time per page.

    .venv/bin/python benchmarks/gallery.py [--small 1000] [--large 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.app import create_app  # noqa: E402
from tests.browsers import CHROMIUM, FLAGS  # noqa: E402
from tests.helpers import jpeg, make_config  # noqa: E402
from tests.peers import free_port  # noqa: E402

VIEWPORT = {"width": 1440, "height": 900}
FIRST = """() => {
  const img = document.querySelector(".tile:not([hidden]) img.loaded");
  return img && img.complete && img.naturalWidth > 0 ? performance.now() : null;
}"""
SCREEN = """() => {
  const images = [...document.querySelectorAll(".tile:not([hidden]) img")];
  const box = document.getElementById("grid").getBoundingClientRect();
  const visible = images.filter((img) => { const r = img.getBoundingClientRect(); return r.bottom > box.top && r.top < box.bottom; });
  return visible.length > 0 && visible.every((img) => img.complete && img.naturalWidth > 0 && img.classList.contains("loaded")) ? performance.now() : null;
}"""
LAST_POSITION = """() => Math.max(-1, ...[...document.querySelectorAll(".tile:not([hidden])")].map((t) => Number(t.dataset.position)))"""
COUNTS = """() => ({
  elements: document.getElementsByTagName("*").length,
  tiles: document.querySelectorAll(".tile").length,
  heap: performance.memory ? performance.memory.usedJSHeapSize : null,
})"""
WATCH_LONG_TASKS = """() => {
  window.__longest = 0;
  window.__long = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      window.__longest = Math.max(window.__longest, e.duration);
      window.__long += 1;
    }
  }).observe({ type: "longtask", buffered: true });
}"""


async def load(session: aiohttp.ClientSession, base: str, collection: str, start: int, count: int) -> float:
    """Upload `count` distinct small JPEGs, 8 at a time; returns images per second."""
    queue = list(range(start, start + count))
    began = time.perf_counter()

    async def worker() -> None:
        while queue:
            n = queue.pop()
            form = aiohttp.FormData()
            form.add_field("n", str(n))
            form.add_field("image", jpeg((320, 240), seed=n), filename=f"img-{n:05d}.jpg", content_type="image/jpeg")
            async with session.post(f"{base}/collections/{collection}/images", data=form) as response:
                assert response.status == 200, await response.text()

    await asyncio.gather(*(worker() for _ in range(8)))
    return count / (time.perf_counter() - began)


async def first_thumbnail(browser: Any, url: str) -> tuple[float, float]:
    context = await browser.new_context(viewport=VIEWPORT, bypass_csp=True)
    page = await context.new_page()
    await page.goto(url)
    first = await (await page.wait_for_function(FIRST, polling="raf", timeout=120_000)).json_value()
    screen = await (await page.wait_for_function(SCREEN, polling="raf", timeout=120_000)).json_value()
    await context.close()
    return first, screen


async def scroll_through(browser: Any, url: str, total: int) -> dict[str, Any]:
    context = await browser.new_context(viewport=VIEWPORT, bypass_csp=True)
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function(FIRST, polling="raf", timeout=120_000)
    await page.evaluate(WATCH_LONG_TASKS)
    samples: list[dict[str, Any]] = []
    page_times: list[float] = []
    last = await page.evaluate(LAST_POSITION)
    while last < total - 1:
        began = time.perf_counter()
        await page.evaluate("() => { const g = document.getElementById('grid'); g.scrollTop = g.scrollHeight; }")
        await page.wait_for_function(f"() => ({LAST_POSITION})() > {last}", polling="raf", timeout=60_000)
        page_times.append(time.perf_counter() - began)
        last = await page.evaluate(LAST_POSITION)
        samples.append({"loaded": last + 1, **await page.evaluate(COUNTS)})
    # Back to the top and down again through what is loaded: no listing requests, only recycling.
    began = time.perf_counter()
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        await page.evaluate(f"() => {{ const g = document.getElementById('grid'); g.scrollTop = g.scrollHeight * {fraction}; }}")
        await page.wait_for_function(SCREEN, polling="raf", timeout=120_000)
    jumps = time.perf_counter() - began
    longest, long_tasks = await page.evaluate("() => [window.__longest, window.__long]")
    await context.close()
    return {"samples": samples, "page_times": page_times, "jumps": jumps, "longest_task_ms": longest, "long_tasks": long_tasks}


async def main(small: int, large: int, runs: int) -> None:
    from playwright.async_api import async_playwright

    if not CHROMIUM.is_file():
        sys.exit(f"{CHROMIUM} is not installed: run `make browser`")
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(make_config(Path(tmp), {"log_level": "WARNING"}))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session, async_playwright() as playwright:
                rate = await load(session, base, "bench", 0, small)
                print(f"loaded {small} images at {rate:.0f}/s")
                browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
                url = f"{base}/gallery?collection=bench"
                cold = await first_thumbnail(browser, url)
                warm = [await first_thumbnail(browser, url) for _ in range(runs)]
                print(f"\n{small} images: first thumbnail cold {cold[0]:.0f} ms, first screen cold {cold[1]:.0f} ms")
                print(
                    f"{small} images: first thumbnail warm median {statistics.median(w[0] for w in warm):.0f} ms"
                    f" (min {min(w[0] for w in warm):.0f}, max {max(w[0] for w in warm):.0f}),"
                    f" first screen warm median {statistics.median(w[1] for w in warm):.0f} ms, {runs} runs"
                )
                rate = await load(session, base, "bench", small, large - small)
                print(f"\nloaded {large - small} more at {rate:.0f}/s")
                warm_large = [await first_thumbnail(browser, url) for _ in range(runs)]
                print(f"{large} images: first thumbnail warm median {statistics.median(w[0] for w in warm_large):.0f} ms")
                result = await scroll_through(browser, url, large)
                await browser.close()
        finally:
            await runner.cleanup()
    samples = result["samples"]
    print(f"\nscrolling through {large} images, {len(samples)} pages of the listing:")
    print(f"{'loaded':>8} {'elements':>9} {'tiles':>6} {'JS heap MB':>11}")
    step = max(1, len(samples) // 10)
    for sample in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        heap = f"{sample['heap'] / 2**20:.1f}" if sample["heap"] is not None else "-"
        print(f"{sample['loaded']:>8} {sample['elements']:>9} {sample['tiles']:>6} {heap:>11}")
    times = sorted(result["page_times"])
    print(
        f"time per page (scroll to the end until the next 100 show): median {statistics.median(times) * 1000:.0f} ms,"
        f" p90 {times[int(len(times) * 0.9)] * 1000:.0f} ms; longest main-thread task {result['longest_task_ms']:.0f} ms"
        f" ({result['long_tasks']} tasks of 50 ms or more);"
        f" five jumps through all {large} (each until the screen decoded) {result['jumps']:.1f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.small, args.large, args.runs))
