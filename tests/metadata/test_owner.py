"""The owner condition (`auth.scope: user`) on every metadata backend."""

from __future__ import annotations

from gateway.metadata.base import ImageRecord, MetadataStore, utcnow
from gateway.metadata.query import Condition, ListQuery, owned_by
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
    assert await metadata_store.count("owned", owned_by(ListQuery(), "bob").conditions) == 1
    assert await metadata_store.count("owned", owned_by(ListQuery(), "carol").conditions) == 0
    assert owned_by(ListQuery(), None) == ListQuery()
    # Combined with a property condition.
    both = owned_by(ListQuery(conditions=(Condition("owner", "$eq", "alice"),)), "bob")
    assert [r.id for r in await metadata_store.find("owned", both)] == [bob.id]
