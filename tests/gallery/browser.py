"""What the gallery's browser tests share: where screenshots go, how long to wait, and the one
server-side warning a browser provokes (see `FILE_RESPONSE_CANCEL`)."""

from __future__ import annotations

from tests.test_browser import ARTIFACTS

GALLERY_ARTIFACTS = ARTIFACTS / "gallery"
TIMEOUT = 30_000
# A page that scrolls or re-renders cancels image requests mid-flight. aiohttp's FileResponse
# (the filesystem backend's signed downloads) opens the file in an executor; a cancel landing
# during that await leaves the opened file to the garbage collector, which closes it with a
# ResourceWarning. That is aiohttp's (web_fileresponse.py, `prepare`), not the gallery's, and
# nothing stays open; every other warning still fails the tests.
FILE_RESPONSE_CANCEL = "ignore:Exception ignored in. <_io.FileIO:pytest.PytestUnraisableExceptionWarning"
