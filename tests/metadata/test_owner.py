"""The owner condition (`auth.scope: user`) on every metadata backend."""

from __future__ import annotations

from dataclasses import replace

from gateway.metadata.base import ImageRecord, MetadataStore, utcnow
from gateway.metadata.query import Condition, Cursor, ListQuery, owned_by
from gateway.names import new_image_id


def record(collection: str, owner: str | None, properties: dict[str, object] | None = None) -> ImageRecord:
    ident = new_image_id()
    now = utcnow()
    return ImageRecord(
        collection=collection, id=ident, image="a.png", time=now, updated_at=now, content_type="image/png", format="png",
        width=1, height=1, size=1, sha256="0" * 64, path=f"{collection}/{ident}.png", properties=properties or {}, owner=owner,
    )


async def test_owner_condition_selects_only_that_owners_records(metadata_store: MetadataStore) -> None:
    await metadata_store.ensure_collection("owned")
    alice = record("owned", "alice")
    # A property named `owner` is not the record's owner.
    bob = record("owned", "bob", {"owner": "alice"})
    nobody = record("owned", None)
    for r in (alice, bob, nobody):
        await metadata_store.insert(r)
    found = await metadata_store.find("owned", owned_by(ListQuery(), "alice"))
    assert [r.id for r in found] == [alice.id]
    assert await metadata_store.count("owned", (), owner="bob") == 1
    assert await metadata_store.count("owned", (), owner="carol") == 0
    assert owned_by(ListQuery(), None) == ListQuery()
    # Combined with a property condition.
    both = owned_by(ListQuery(conditions=(Condition("owner", "$eq", "alice"),)), "bob")
    assert [r.id for r in await metadata_store.find("owned", both)] == [bob.id]


async def test_owner_scope_holds_across_keyset_pages(metadata_store: MetadataStore) -> None:
    await metadata_store.ensure_collection("paged")
    made = [record("paged", "alice" if i % 2 else "bob") for i in range(10)]
    for r in made:
        await metadata_store.insert(r)
    query = owned_by(ListQuery(limit=2, descending=False), "alice")
    seen: list[str] = []
    while page := await metadata_store.find("paged", query):
        seen += [r.id for r in page]
        query = replace(query, after=Cursor(page[-1].time, page[-1].id))
    alice = sorted((r for r in made if r.owner == "alice"), key=lambda r: (r.time, r.id))
    assert seen == [r.id for r in alice]
    assert query.owner == "alice"
