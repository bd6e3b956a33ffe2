"""Chromium for the gallery tests, as tests/test_browser.py launches it (Debian's build, by path)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import APP_BACKENDS, app_overrides
from tests.gallery.browser import FILE_RESPONSE_CANCEL, GALLERY_ARTIFACTS
from tests.test_browser import CHROMIUM, FLAGS, _missing


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/gallery/" in item.nodeid:
            item.add_marker(pytest.mark.filterwarnings(FILE_RESPONSE_CANCEL))


@pytest.fixture(params=APP_BACKENDS)
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Config overrides of one backend pair: embedded, or MinIO+FerretDB."""
    return app_overrides(request, request.param)


@pytest.fixture
async def chromium() -> Any:
    if not CHROMIUM.is_file():
        _missing(f"{CHROMIUM} is not installed: run `make browser` (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[test]'")
    GALLERY_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()
