"""Debian's Chromium, launched by path through Playwright (no browser download), for every
browser test: the flags this machine's closed network needs, and a skip (or, under
GATEWAY_REQUIRE_PEERS=1, a failure) when it is not installed."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REQUIRE_PEERS

CHROMIUM = Path(os.environ.get("GATEWAY_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def missing(message: str) -> None:
    if REQUIRE_PEERS:
        pytest.fail(message + "; GATEWAY_REQUIRE_PEERS=1 forbids skipping", pytrace=False)
    pytest.skip(message)


@asynccontextmanager
async def chromium(artifacts: Path) -> AsyncIterator[Any]:
    """A launched headless Chromium; `artifacts` (for screenshots) is made first."""
    if not CHROMIUM.is_file():
        missing(f"{CHROMIUM} is not installed: run `make browser` (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        missing("playwright is not installed: pip install -e '.[test]'")
    artifacts.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()
