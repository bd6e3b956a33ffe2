"""X-Total-Count is the collection's size on every page, whether it was counted or known from a
page that reached the end (which saves a scan of the collection on FerretDB)."""

from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestClient

from tests.helpers import png


async def test_total_on_first_middle_last_and_past_the_end(client: TestClient) -> None:
    for seed in range(5):
        data = aiohttp.FormData()
        data.add_field("image", png(seed=seed), filename="a.png", content_type="image/png")
        assert (await client.post("/collections/totals/images", data=data)).status == 200
    for query, count in [("", 5), ("?limit=2", 2), ("?limit=2&skip=2", 2), ("?limit=2&skip=4", 1), ("?skip=5", 0), ("?skip=9", 0), ("?limit=5", 5)]:
        response = await client.get(f"/collections/totals/images{query}")
        assert response.status == 200
        assert len(await response.json()) == count, query
        assert response.headers["X-Total-Count"] == "5", query
    response = await client.get("/collections/empty/images")
    assert response.headers["X-Total-Count"] == "0"
