"""Dataset export and import with authentication: the scopes of the routes, and owner scoping."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import aiohttp

from tests.auth.helpers import READER_KEY, WRITER_KEY, auth_tree
from tests.helpers import png

ALICE = {"Authorization": "Bearer alice-token"}


def archive_form() -> aiohttp.FormData:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", png(seed=3))
        archive.writestr("mongodb_data.json", json.dumps([{"_id": "5f1d7f3b9c1e4a0012345678", "time": "2020-01-01T00:00:00Z", "image": "a.png"}]))
    form = aiohttp.FormData()
    form.add_field("archive", buffer.getvalue(), filename="d.zip", content_type="application/zip")
    return form


async def test_import_needs_write_and_records_the_importer(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url))
    assert (await client.post("/collections/ds/import", data=archive_form(), headers={"X-API-Key": READER_KEY})).status == 403
    response = await client.post("/collections/ds/import", data=archive_form(), headers=ALICE)
    assert (response.status, (await response.json())["imported"]) == (200, 1)
    doc = await (await client.get("/collections/ds/images/5f1d7f3b9c1e4a0012345678", headers=ALICE)).json()
    assert doc["owner"] == "alice"
    assert (await client.get("/collections/ds/export", headers={"X-API-Key": READER_KEY})).status == 200
    assert (await client.get("/collections/ds/export")).status == 401


async def test_owner_scoped_users_cannot_export_everyone(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url, scope="user"))
    assert (await client.post("/collections/ds/import", data=archive_form(), headers=ALICE)).status == 200
    response = await client.get("/collections/ds/export", headers=ALICE)
    assert (response.status, (await response.json())["error"]["code"]) == (403, "not_owner")
    assert (await client.get("/collections/ds/export", headers={"X-API-Key": WRITER_KEY})).status == 200
