"""Calls to the identity service show in /metrics: latency always, errors when it fails."""

from __future__ import annotations

from typing import Any

from tests.auth.conftest import auth_tree
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
