"""With authentication on: identity-service calls in /metrics, and event feeds that show only
what the caller may read."""

from __future__ import annotations

from typing import Any

from tests.api.test_collections import form
from tests.auth.helpers import OTHER_KEY, WRITER_KEY, auth_tree
from tests.helpers import png
from tests.test_observability import metrics_text, value


async def test_identity_calls_are_timed_and_failures_counted(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url))
    assert (await client.get("/collections", headers={"Authorization": "Bearer alice-token"})).status == 200
    text = await metrics_text(client)
    assert value(text, "gateway_dependency_duration_seconds_count", dependency="identity", operation="request") == 1
    assert value(text, "gateway_dependency_errors_total", dependency="identity", operation="request") == 0
    identity.mode = "error"
    assert (await client.get("/collections", headers={"Authorization": "Bearer bob-token"})).status == 503
    text = await metrics_text(client)
    assert value(text, "gateway_dependency_errors_total", dependency="identity", operation="request") == 1


async def test_event_feeds_hide_what_reads_would(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url, scope="user"))
    assert (await client.get("/events")).status == 401
    # A key limited to other-* sees only those collections on the all-collections feed.
    limited = await client.ws_connect("/events", headers={"X-API-Key": OTHER_KEY})
    assert (await limited.receive_json(timeout=10))["event"] == "subscribed"
    # Under scope: user, Alice sees her own images only.
    alice = await client.ws_connect("/collections/shared/events", headers={"Authorization": "Bearer alice-token"})
    assert (await alice.receive_json(timeout=10))["event"] == "subscribed"

    async def post(collection: str, headers: dict[str, str]) -> str:
        response = await client.post(f"/collections/{collection}/images", data=form(png()), headers=headers)
        assert response.status == 200, await response.text()
        return (await response.json())["id"]

    await post("shared", {"Authorization": "Bearer bob-token"})
    await post("private", {"X-API-Key": WRITER_KEY})
    mine = await post("shared", {"Authorization": "Bearer alice-token"})
    theirs = await post("other-1", {"X-API-Key": OTHER_KEY})
    assert (await alice.receive_json(timeout=10))["id"] == mine
    # Each first event is its own: the ones before it were held back.
    assert (await limited.receive_json(timeout=10))["id"] == theirs
    await alice.close()
    await limited.close()
