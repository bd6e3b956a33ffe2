"""On MongoDB the store and the event log run on one client, which `open_metadata` owns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.errors import Unavailable
from gateway.metadata import open_metadata
from tests.helpers import make_config, mongo_overrides

pytestmark = pytest.mark.peers


async def test_one_client_for_store_and_log_closed_when_the_context_ends(ferretdb: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path, mongo_overrides(ferretdb.url))
    async with open_metadata(config) as (store, log):
        client = store._client  # type: ignore[attr-defined]
        assert log._events.database.client is client  # type: ignore[attr-defined]
        await store.ping()
        assert await log.latest() == 0
    with pytest.raises(Unavailable):
        await store.ping()
    with pytest.raises(Unavailable):
        await log.latest()
