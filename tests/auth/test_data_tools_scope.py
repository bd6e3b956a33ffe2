"""Owner scope on the data tools of issue 9: writes by filter, field discovery and dedupe reach only
the caller's own images."""

from __future__ import annotations

from typing import Any

from tests.auth.helpers import READER_KEY, WRITER_KEY, auth_tree
from tests.auth.test_behaviour import ALICE, BOB, upload_form


async def test_writes_by_filter_and_discovery_keep_to_the_callers_images(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url, scope="user"))
    alice = await (await client.post("/collections/shared/images", data=upload_form(1), headers=ALICE)).json()
    bob = await (await client.post("/collections/shared/images", data=upload_form(2), headers=BOB)).json()

    patched = await client.patch("/collections/shared/images?all=true", json={"by": "alice"}, headers=ALICE)
    assert (await patched.json())["matched"] == 1
    fields = await (await client.get("/collections/shared/fields", headers=BOB)).json()
    assert fields["fields"] == [] and fields["scanned"] == 1
    values = await (await client.get("/collections/shared/fields/by", headers=ALICE)).json()
    assert values["values"] == [{"value": "alice", "count": 1}]
    # Bob's upload of Alice's bytes is not a duplicate of hers: he cannot see her image.
    again = await (await client.post("/collections/shared/images?dedupe=true", data=upload_form(1), headers=BOB)).json()
    assert "duplicate" not in again and again["owner"] == "bob"

    deleted = await client.delete("/collections/shared/images?all=true", headers=BOB)
    assert await deleted.json() == {"matched": 2, "deleted": 2, "more": False}
    service = {"X-API-Key": WRITER_KEY}
    left = await (await client.get("/collections/shared/images", headers=service)).json()
    assert [(d["id"], d["properties"]) for d in left] == [(alice["id"], {"by": "alice"})]
    assert bob["id"] not in {d["id"] for d in left}
    # Dropping the collection itself still needs a service key.
    assert (await client.delete("/collections/shared", headers=ALICE)).status == 403


async def test_writes_by_filter_need_the_write_scope(auth_client: Any) -> None:
    client = await auth_client(auth_tree())
    reader = {"X-API-Key": READER_KEY}
    for method in ("patch", "delete"):
        response = await client.request(method, "/collections/shared/images?all=true", json={"a": 1}, headers=reader)
        assert (response.status, (await response.json())["error"]["code"]) == (403, "insufficient_scope")
    assert (await client.get("/collections/shared/images", headers=reader)).status == 200
