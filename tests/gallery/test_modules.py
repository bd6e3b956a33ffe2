"""The gallery's pure functions, imported as the page imports them, in Chromium: merge patches,
filters applied to documents, and property keys named as /fields names them. They touch no
backend, so the embedded app only serves the files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from tests.helpers import make_config

pytestmark = pytest.mark.embedded

CASES = """async () => {
  const props = await import("/gallery/js/props.js");
  const view = await import("/gallery/js/view.js");
  const out = {};
  out.patchChange = props.mergePatch({ a: 1, b: "x", o: { p: 1, q: 2 } }, { a: 2, o: { p: 1 }, n: [1, null] });
  out.patchSame = props.mergePatch({ a: 1 }, { a: 1 });
  out.patchNestedNull = props.mergePatch({ o: { p: 1 } }, { o: { p: null } });
  out.patchTopNull = props.mergePatch({}, { z: null });
  out.applied = view.applyMergePatch({ a: 1, o: { p: 1, q: 2 } }, { a: null, o: { q: null, r: 3 } });
  const doc = { time: "2026-01-01T00:00:00.000Z", properties: { n: 5, s: "alps", nested: { k: true } } };
  out.match = [
    view.matches(doc, [["n", "$gte", 5], ["s", "$eq", "alps"]]),
    view.matches(doc, [["n", "$gt", 5]]),
    view.matches(doc, [["nested.k", "$eq", true]]),
    view.matches(doc, [["missing", "$exists", false]]),
    view.matches(doc, [["s", "$ne", "alps"]]),
  ];
  out.filter = view.filterDocument([["n", "$gte", 1], ["n", "$lt", 9], ["s", "$eq", "a"]]);
  out.sorts = [view.sortParam("-time"), view.sortParam("time"), view.sortParam("prop:score:-1"), view.sortParam("junk")];
  out.keys = [view.dottedKeys({ a: 1, box: { x: 1, y: { z: [1] } }, list: [{ k: 1 }], none: null }), view.dottedKeys(undefined)];
  const typed = (t, v) => { try { return props.parseTyped(t, v); } catch (e) { return "error: " + e.message; } };
  out.typed = [typed("number", "4.5"), typed("number", "four"), typed("boolean", "false"), typed("json", '{"a":[1]}'), typed("json", "{oops"), typed("string", "5")];
  return out;
}"""


async def test_merge_patches_filters_and_property_keys(chromium: Any, aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path)))
    page = await chromium.new_page()
    await page.goto(str(client.make_url("/gallery")))
    out = await page.evaluate(CASES)
    assert out["patchChange"] == {"b": None, "a": 2, "o": {"q": None}, "n": [1, None]}
    assert out["patchSame"] == {}
    # "set p to null" cannot be a merge patch (null deletes): the page replaces the set instead.
    assert out["patchNestedNull"] is None and out["patchTopNull"] is None
    assert out["applied"] == {"o": {"p": 1, "r": 3}}
    assert out["match"] == [True, False, True, True, False]
    assert out["filter"] == {"n": {"$gte": 1, "$lt": 9}, "s": {"$eq": "a"}}
    assert out["sorts"] == ["-time", "time", '{"score":-1}', "-time"]
    # As the server's discovery names them (gateway/service/discovery.py): objects and their keys, not arrays' contents.
    assert out["keys"] == [["a", "box", "box.x", "box.y", "box.y.z", "list", "none"], []]
    assert out["typed"][0] == 4.5 and out["typed"][1].startswith("error:") and out["typed"][2] is False
    assert out["typed"][3] == {"a": [1]} and out["typed"][4].startswith("error:") and out["typed"][5] == "5"
