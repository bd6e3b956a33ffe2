"""Issue 9: the original service's clients (its parameter names, sort documents, _id filters,
cache busters) and the later API's data tools, over embedded and over MinIO+FerretDB."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from tests.api.test_collections import upload
from tests.helpers import png


def q(value: Any) -> str:
    return quote(json.dumps(value) if not isinstance(value, str) else value)


async def listed(client: TestClient, query: str, collection: str = "compat") -> list[dict[str, Any]]:
    response = await client.get(f"/collections/{collection}/images?{query}")
    assert response.status == 200, await response.text()
    return await response.json()


async def error_code(client: TestClient, path: str) -> str:
    response = await client.get(path)
    assert response.status == 400, await response.text()
    return (await response.json())["error"]["code"]


@pytest.fixture
async def five(client: TestClient) -> list[str]:
    """Five images, oldest first, with a score of mixed types and a rank."""
    scores: list[Any] = [3, "b", 1.5, None, True]
    docs = []
    for index, score in enumerate(scores):
        typed = {"rank": index % 2} if score is None else {"score": score, "rank": index % 2}
        docs.append(await upload(client, "compat", png(seed=index), json=json.dumps(typed)))
    return [d["id"] for d in docs]


async def test_limit_aliases(client: TestClient, five: list[str]) -> None:
    for name in ("limit", "batch_size", "count"):
        assert [d["id"] for d in await listed(client, f"{name}=2")] == five[::-1][:2], name


async def test_skip_aliases(client: TestClient, five: list[str]) -> None:
    for name in ("skip", "start_index", "index", "offset"):
        assert [d["id"] for d in await listed(client, f"{name}=3")] == five[::-1][3:], name
    assert [d["id"] for d in await listed(client, "batch_size=1&start_index=1")] == [five[3]]


async def test_aliases_of_one_parameter_are_refused_together(client: TestClient, five: list[str]) -> None:
    assert await error_code(client, "/collections/compat/images?limit=1&batch_size=2") == "invalid_parameter"
    assert await error_code(client, "/collections/compat/images?skip=1&index=2") == "invalid_parameter"


async def test_default_page_is_the_originals_500(client: TestClient) -> None:
    from gateway.api.params import MAX_LIMIT, list_query
    from multidict import MultiDict

    assert list_query(MultiDict()).limit == 500 and MAX_LIMIT == 1000
    for index in range(51):
        await upload(client, "many", png(seed=index))
    assert len(await listed(client, "", "many")) == 51
    assert len(await listed(client, "limit=1000", "many")) == 51
    assert await error_code(client, "/collections/many/images?count=1001") == "invalid_parameter"


async def test_sort_forms(client: TestClient, five: list[str]) -> None:
    newest, oldest = five[::-1], five
    assert [d["id"] for d in await listed(client, "sort=" + q({"time": -1}))] == newest
    assert [d["id"] for d in await listed(client, "sort=" + q({"time": 1}))] == oldest
    assert [d["id"] for d in await listed(client, "sort=time&order=-1")] == newest
    assert [d["id"] for d in await listed(client, "sort=time&order=1")] == oldest
    assert [d["id"] for d in await listed(client, "sort=" + q([["time", -1]]))] == newest
    # missing < numbers < strings < booleans: [none(3), 1.5(2), 3(0), "b"(1), true(4)]
    by_score = [five[3], five[2], five[0], five[1], five[4]]
    assert [d["id"] for d in await listed(client, "sort=" + q({"score": 1}))] == by_score
    assert [d["id"] for d in await listed(client, "sort=score")] == by_score
    assert [d["id"] for d in await listed(client, "sort=-score")] == by_score[::-1]
    assert [d["id"] for d in await listed(client, "sort=score&order=-1")] == by_score[::-1]
    # rank: 0 for images 0, 2, 4; 1 for 1, 3; then time ascending.
    assert [d["id"] for d in await listed(client, "sort=" + q({"rank": -1, "time": 1}))] == [five[1], five[3], five[0], five[2], five[4]]
    assert [d["id"] for d in await listed(client, "sort=" + q({"_id": 1}))] == oldest


@pytest.mark.parametrize(
    "sort",
    [{"score": 1}, {"score": -1}, {"rank": -1, "time": 1}, {"rank": 1, "score": -1}, {"time": 1}, {"id": -1}],
    ids=lambda s: json.dumps(s),
)
async def test_property_sorts_page_through_the_link_header(client: TestClient, five: list[str], sort: dict[str, int]) -> None:
    whole = [d["id"] for d in await listed(client, "sort=" + q(sort))]
    seen: list[str] = []
    url: str | None = f"/collections/compat/images?limit=2&sort={q(sort)}"
    while url:
        response = await client.get(url)
        assert response.status == 200, await response.text()
        seen += [d["id"] for d in await response.json()]
        link = response.headers.get("Link")
        url = link[link.index("/collections") : link.index(">")] if link else None
    assert seen == whole and sorted(seen) == sorted(five)


async def test_a_cursor_from_another_sort_is_refused(client: TestClient, five: list[str]) -> None:
    response = await client.get("/collections/compat/images?limit=2&sort=score")
    link = response.headers["Link"]
    cursor = link[link.index("cursor=") + 7 : link.index(">")]
    assert await error_code(client, f"/collections/compat/images?sort=-score&cursor={cursor}") == "invalid_cursor"
    assert await error_code(client, f"/collections/compat/images?cursor={cursor}") == "invalid_cursor"


@pytest.mark.parametrize(
    "sort",
    ["%24where", "a.b", q({"time": 0}), q({"$natural": 1}), q({"score": "up"}), q({}), "score&order=2", "-score&order=1"],
)
async def test_bad_sorts(client: TestClient, sort: str) -> None:
    assert await error_code(client, f"/collections/compat/images?sort={sort}") == "invalid_parameter"


async def test_order_needs_a_sort(client: TestClient) -> None:
    assert await error_code(client, "/collections/compat/images?order=-1") == "invalid_parameter"


async def test_filter_on_id(client: TestClient, five: list[str]) -> None:
    for field in ("_id", "id"):
        assert [d["id"] for d in await listed(client, "filter=" + q({field: five[1]}))] == [five[1]]
        assert [d["id"] for d in await listed(client, "filter=" + q({field: {"$eq": five[1].upper()}}))] == [five[1]]
        assert sorted(d["id"] for d in await listed(client, "filter=" + q({field: {"$in": five[:2]}}))) == sorted(five[:2])
        assert sorted(d["id"] for d in await listed(client, "filter=" + q({field: {"$nin": five[:2]}}))) == sorted(five[2:])
    assert [d["id"] for d in await listed(client, "filter=" + q({"_id": {"$in": five[:3]}, "rank": 1}))] == [five[1]]
    for bad in ({"_id": "nope"}, {"_id": {"$gt": five[0]}}, {"_id": {"$in": ["x"]}}, {"id": {"$in": "abc"}}, {"_id": 5}):
        assert await error_code(client, "/collections/compat/images?filter=" + q(bad)) == "invalid_filter"


async def test_reads_of_one_image_and_downloads_ignore_unknown_parameters(client: TestClient) -> None:
    doc = await upload(client, "compat", png())
    base = f"/collections/compat/images/{doc['id']}"
    for path in (base, base + "/info"):
        response = await client.get(path + "?v=2&utm_source=x&%24where=1")
        assert response.status == 200 and (await response.json())["id"] == doc["id"]
    for path in (base + "/image", base + "/file"):
        response = await client.get(path + "?v=2&_=1700000000", allow_redirects=False)
        assert response.status == 302
    for path in ("/openapi.json?v=1", "/docs?v=1"):
        assert (await client.get(path)).status == 200
    v1 = await client.post("/v1/images", json={"data": __import__("base64").b64encode(png(seed=9)).decode()})
    v1_id = (await v1.json())["id"]
    assert (await client.get(f"/v1/images/{v1_id}?v=2")).status == 200
    assert (await client.get(f"/v1/images/{v1_id}/image?v=2", allow_redirects=False)).status == 302


async def test_listings_and_writes_still_refuse_unknown_parameters(client: TestClient) -> None:
    doc = await upload(client, "compat", png())
    base = f"/collections/compat/images/{doc['id']}"
    assert await error_code(client, "/collections/compat/images?limt=1") == "unknown_parameter"
    for method in ("patch", "put"):
        response = await getattr(client, method)(base + "?v=2", json={"a": 1})
        assert response.status == 400 and (await response.json())["error"]["code"] == "unknown_parameter"
    response = await client.delete(base + "?v=2")
    assert response.status == 400
    assert (await client.get(base)).status == 200


# --- CORS: the original's Express cors() defaults ---------------------------------------------


async def test_cors_answers_any_origin_by_default_without_credentials(client: TestClient, five: list[str]) -> None:
    origin = {"Origin": "https://front-end.example"}
    listing = await client.get("/collections/compat/images?limit=2", headers=origin)
    assert listing.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in listing.headers
    exposed = {h.strip() for h in listing.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Content-Disposition", "Link", "X-Total-Count"} <= exposed
    preflight = await client.options(
        f"/collections/compat/images/{five[0]}",
        headers={**origin, "Access-Control-Request-Method": "PATCH", "Access-Control-Request-Headers": "content-type"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    patched = await client.patch(f"/collections/compat/images/{five[0]}", json={"seen": True}, headers=origin)
    assert patched.status == 200 and patched.headers["Access-Control-Allow-Origin"] == "*"
    redirect = await client.get(f"/collections/compat/images/{five[0]}/image", headers=origin, allow_redirects=False)
    assert redirect.status == 302 and redirect.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.embedded
async def test_cors_can_be_limited_to_a_list_or_turned_off(make_client: Any) -> None:
    listed_only = await make_client({"cors": {"allowed_origins": ["https://app.example"]}})
    allowed = await listed_only.get("/collections", headers={"Origin": "https://app.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example" and allowed.headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Origin" not in (await listed_only.get("/collections", headers={"Origin": "https://evil.example"})).headers
    off = await make_client({"cors": {"allowed_origins": []}})
    answer = await off.get("/collections", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in answer.headers and "Vary" not in answer.headers


@pytest.mark.embedded
def test_cors_from_the_environment() -> None:
    from gateway.config import load_config

    assert load_config(environ={}).cors.allowed_origins == ("*",)
    assert load_config(environ={"CORS_ALLOWED_ORIGINS": ""}).cors.allowed_origins == ()
    assert load_config(environ={"CORS_ALLOWED_ORIGINS": "https://a.example, https://b.example"}).cors.allowed_origins == ("https://a.example", "https://b.example")
