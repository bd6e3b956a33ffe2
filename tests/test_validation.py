"""Validation of request input: names, ids, properties, merge patches, filters, list queries,
and the file names clients send."""

from __future__ import annotations

import base64
import copy
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from multidict import MultiDict

from gateway.errors import Invalid, NotFound
from gateway.service import sanitize_filename
from gateway.api.params import decode_cursor, encode_cursor, list_query, parse_filter
from gateway.metadata.query import Condition, Cursor, DEFAULT_LIMIT
from gateway.names import collection_name, image_id
from gateway.properties import MAX_PROPERTY_DEPTH, merge_patch, validate_properties as properties

# --- collection names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "0", "images", "my-photos_2024.v1", "a.b", "a-", "a" * 63])
def test_valid_collection_names(name: str) -> None:
    assert collection_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Images",
        "IMAGES",
        ".hidden",
        "-dash",
        "_under",
        "..",
        "a..b",
        "a" * 64,
        "a/b",
        "a\\b",
        "a%2Fb",
        "%2e%2e",
        "a\x00b",
        "café",
        "ｉmages",  # fullwidth i
        "a b",
        "images\n",
    ],
)
def test_invalid_collection_names(name: str) -> None:
    with pytest.raises(Invalid) as caught:
        collection_name(name)
    assert caught.value.code == "invalid_collection"


# --- image ids -----------------------------------------------------------------------------------


def test_image_id_is_24_hex_digits() -> None:
    assert image_id("0123456789abcdef01234567") == "0123456789abcdef01234567"


def test_image_id_uppercase_is_normalised_to_lowercase() -> None:
    assert image_id("0123456789ABCDEF01234567") == "0123456789abcdef01234567"


@pytest.mark.parametrize(
    "raw", ["", "0" * 23, "0" * 25, "g" * 24, " " + "0" * 23, "0" * 24 + "\n", "../" * 8, "0x" + "0" * 22, "٠" * 24]
)
def test_malformed_image_id_is_not_found(raw: str) -> None:
    with pytest.raises(NotFound) as caught:
        image_id(raw)
    assert caught.value.code == "image_not_found"


# --- properties ----------------------------------------------------------------------------------


def nested(levels: int, leaf: Any = 1) -> dict[str, Any]:
    value: Any = leaf
    for _ in range(levels):
        value = {"k": value}
    return value


def test_valid_properties_are_returned_as_they_are() -> None:
    doc = {"a": 1, "b": {"c": [1, "x", None, True, 1.5, {"d": []}]}, "ünï": "ok", "k" * 256: -(2**63), "big": 2**63 - 1}
    assert properties(doc, max_bytes=10_000) is doc


@pytest.mark.parametrize("value", [[], "x", None, 1, [{"a": 1}]])
def test_properties_must_be_an_object(value: Any) -> None:
    with pytest.raises(Invalid):
        properties(value, max_bytes=10_000)


BAD_KEYS = ["$where", "$set", "a.b", ".a", "a.", "a\x00b", "", "k" * 257]


@pytest.mark.parametrize("key", BAD_KEYS)
@pytest.mark.parametrize(
    "place",
    [
        pytest.param(lambda k: {k: 1}, id="top"),
        pytest.param(lambda k: {"a": {k: 1}}, id="nested"),
        pytest.param(lambda k: {"a": [1, {k: 1}]}, id="in-list"),
        pytest.param(lambda k: {"a": [[{"b": {k: 1}}]]}, id="deep"),
    ],
)
def test_unsafe_keys_are_refused_at_any_depth(key: str, place: Any) -> None:
    with pytest.raises(Invalid) as caught:
        properties(place(key), max_bytes=10_000)
    assert caught.value.code == "invalid_property_key"


@pytest.mark.parametrize("doc", [{"a": "x\x00y"}, {"a": {"b": ["ok", "\x00"]}}])
def test_nul_in_values_is_refused(doc: dict[str, Any]) -> None:
    with pytest.raises(Invalid):
        properties(doc, max_bytes=10_000)


def test_nesting_limit() -> None:
    assert properties(nested(MAX_PROPERTY_DEPTH), max_bytes=10_000)
    with pytest.raises(Invalid) as caught:
        properties(nested(MAX_PROPERTY_DEPTH + 1), max_bytes=10_000)
    assert caught.value.code == "invalid_properties"
    lists: Any = 1
    for _ in range(MAX_PROPERTY_DEPTH):
        lists = [lists]
    with pytest.raises(Invalid):
        properties({"k": lists}, max_bytes=10_000)


def test_very_deep_nesting_is_refused_without_recursion_error() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(Invalid):
        properties({"k": deep}, max_bytes=10**9)


def test_size_limit_is_compact_json_bytes() -> None:
    doc = {"a": "x" * 10}
    size = len(json.dumps(doc, separators=(",", ":")))
    assert properties(doc, max_bytes=size) is doc
    with pytest.raises(Invalid) as caught:
        properties(doc, max_bytes=size - 1)
    assert caught.value.code == "properties_too_large"


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("place", [pytest.param(lambda n: {"a": n}, id="top"), pytest.param(lambda n: {"a": [{"b": n}]}, id="nested")])
def test_non_finite_numbers_are_refused(number: float, place: Any) -> None:
    with pytest.raises(Invalid):
        properties(place(number), max_bytes=10_000)


@pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 10**30])
def test_integers_beyond_64_bits_are_refused(number: int) -> None:
    # MongoDB (BSON) and SQLite hold 64-bit integers; larger ones used to fail inside the backend.
    with pytest.raises(Invalid):
        properties({"n": [number]}, max_bytes=10_000)
    with pytest.raises(Invalid):
        parse_filter(json.dumps({"n": {"$gt": number}}))


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", (1, 2), object()])
def test_non_json_values_are_refused(value: Any) -> None:
    with pytest.raises(Invalid):
        properties({"a": value}, max_bytes=10_000)


# --- merge patch: RFC 7386, appendix A -----------------------------------------------------------

RFC_7386_EXAMPLES = [
    ('{"a":"b"}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"b"}', '{"b":"c"}', '{"a":"b","b":"c"}'),
    ('{"a":"b"}', '{"a":null}', "{}"),
    ('{"a":"b","b":"c"}', '{"a":null}', '{"b":"c"}'),
    ('{"a":["b"]}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"c"}', '{"a":["b"]}', '{"a":["b"]}'),
    ('{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}', '{"a":{"b":"d"}}'),
    ('{"a":[{"b":"c"}]}', '{"a":[1]}', '{"a":[1]}'),
    ('["a","b"]', '["c","d"]', '["c","d"]'),
    ('{"a":"b"}', '["c"]', '["c"]'),
    ('{"a":"foo"}', "null", "null"),
    ('{"a":"foo"}', '"bar"', '"bar"'),
    ('{"e":null}', '{"a":1}', '{"e":null,"a":1}'),
    ("[1,2]", '{"a":"b","c":null}', '{"a":"b"}'),
    ("{}", '{"a":{"bb":{"ccc":null}}}', '{"a":{"bb":{}}}'),
]


@pytest.mark.parametrize(("original", "patch", "result"), RFC_7386_EXAMPLES)
def test_merge_patch_rfc_7386_examples(original: str, patch: str, result: str) -> None:
    target = json.loads(original)
    before = copy.deepcopy(target)
    assert merge_patch(target, json.loads(patch)) == json.loads(result)
    assert target == before, "the target is not changed in place"


# --- filters -------------------------------------------------------------------------------------

T = "2024-05-01T12:00:00Z"
T_UTC = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{}", ()),
        ('{"a": 1}', (Condition("a", "$eq", 1),)),
        ('{"a": null}', (Condition("a", "$eq", None),)),
        ('{"a": {"$eq": "x"}}', (Condition("a", "$eq", "x"),)),
        ('{"a": {"$ne": true}}', (Condition("a", "$ne", True),)),
        ('{"a": {"$gt": 1.5, "$lte": 9}}', (Condition("a", "$gt", 1.5), Condition("a", "$lte", 9))),
        ('{"a": {"$gte": 0, "$lt": 3}}', (Condition("a", "$gte", 0), Condition("a", "$lt", 3))),
        ('{"a": {"$in": [1, "x", null, false]}}', (Condition("a", "$in", [1, "x", None, False]),)),
        ('{"a": {"$nin": []}}', (Condition("a", "$nin", []),)),
        ('{"a": {"$exists": false}}', (Condition("a", "$exists", False),)),
        ('{"time": "%s"}' % T, (Condition("time", "$eq", T_UTC),)),
        ('{"time": {"$gt": "2024-05-01T14:00:00+02:00"}}', (Condition("time", "$gt", T_UTC),)),
        ('{"time": {"$in": ["%s"]}}' % T, (Condition("time", "$in", [T_UTC]),)),
        ('{"time": {"$exists": true}}', (Condition("time", "$exists", True),)),
    ],
)
def test_filter_accepts_the_allowed_operators(raw: str, expected: tuple[Condition, ...]) -> None:
    assert parse_filter(raw) == expected


def test_filter_time_without_zone_is_utc() -> None:
    (condition,) = parse_filter('{"time": {"$lt": "2024-05-01T12:00:00"}}')
    assert condition.value == T_UTC and condition.value.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "raw",
    [
        '{"$where": "sleep(1000)"}',
        '{"a": {"$where": "1"}}',
        '{"a": {"$regex": "^x"}}',
        '{"a": {"$expr": {"$gt": ["$a", 1]}}}',
        '{"$expr": {"$gt": ["$a", 1]}}',
        '{"$or": [{"a": 1}, {"b": 2}]}',
        '{"$and": [{"a": 1}]}',
        '{"a": {"$or": [1, 2]}}',
        '{"a": {"$elemMatch": {"b": 1}}}',
        '{"a": {"$not": {"$eq": 1}}}',
        '{"a": {"$eq": {"$gt": 1}}}',
        '{"a": {"$ne": {"b": 1}}}',
        '{"a": {"$in": [{"$gt": 1}]}}',
        '{"a": {"$in": [[1]]}}',
        '{"a": {"$gt": [1]}}',
        '{"a": {"b": 1}}',
        '{"a": [1, 2]}',
        '{"a": {}}',
        '{"a.b": 1}',
        '{"a\\u0000": 1}',
        '{"": 1}',
        '{"a": {"$exists": 1}}',
        '{"a": {"$in": "x"}}',
        '{"a": {"$in": %s}}' % json.dumps(list(range(101))),
        json.dumps({f"k{i}": i for i in range(33)}),
    ],
)
def test_filter_refuses_other_operators_and_shapes(raw: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_filter(raw)
    assert caught.value.code == "invalid_filter"


@pytest.mark.parametrize("raw", ["[]", '[{"a": 1}]', '"a"', "1", "null", "true"])
def test_filter_must_be_a_json_object(raw: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_filter(raw)
    assert caught.value.code == "invalid_filter"


@pytest.mark.parametrize("raw", ["", "{", "{'a': 1}", '{"a": 1,}', "a=1"])
def test_filter_must_be_json(raw: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_filter(raw)
    assert caught.value.code == "invalid_json"


@pytest.mark.parametrize(
    "raw",
    [
        '{"time": "yesterday"}',
        '{"time": 1714564800}',
        '{"time": null}',
        '{"time": {"$gt": "2024-13-01"}}',
        '{"time": {"$in": ["%s", "nope"]}}' % T,
        '{"time": {"$lt": "9999-12-31T23:59:59-05:00"}}',  # past year 9999 in UTC
        '{"time": {"$gt": "0001-01-01T00:00:00+01:00"}}',  # before year 1 in UTC
    ],
)
def test_filter_refuses_bad_times(raw: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_filter(raw)
    assert caught.value.code == "invalid_filter"


@pytest.mark.parametrize("raw", ['{"a": NaN}', '{"a": {"$gt": Infinity}}', '{"a": {"$in": [-Infinity]}}'])
def test_filter_refuses_non_finite_numbers(raw: str) -> None:
    with pytest.raises(Invalid):
        parse_filter(raw)


# --- list queries --------------------------------------------------------------------------------


def query(*pairs: tuple[str, str], **params: str) -> Any:
    return list_query(MultiDict([*pairs, *params.items()]))


def test_list_query_defaults() -> None:
    parsed = query()
    assert (parsed.limit, parsed.skip, parsed.descending, parsed.after, parsed.conditions) == (DEFAULT_LIMIT, 0, True, None, ())


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("50", 50), ("1000", 1000), ("007", 7)])
def test_limit_bounds(raw: str, value: int) -> None:
    assert query(limit=raw).limit == value


@pytest.mark.parametrize(
    "raw", ["0", "1001", "-1", "abc", "", "1.5", "1e3", " 5", "5 ", "+5", "9" * 13, "99999999999", "0x10", "١٠", "１０", "1_0"]
)
def test_bad_limit(raw: str) -> None:
    with pytest.raises(Invalid) as caught:
        query(limit=raw)
    assert caught.value.code == "invalid_parameter"


@pytest.mark.parametrize("name", ["skip", "offset"])
@pytest.mark.parametrize(("raw", "value"), [("0", 0), ("25", 25), ("10000000", 10_000_000)])
def test_skip_and_offset_bounds(name: str, raw: str, value: int) -> None:
    assert query(**{name: raw}).skip == value


@pytest.mark.parametrize("name", ["skip", "offset"])
@pytest.mark.parametrize("raw", ["10000001", "-1", "x", "", "1.0", "9" * 40])
def test_bad_skip_and_offset(name: str, raw: str) -> None:
    with pytest.raises(Invalid) as caught:
        query(**{name: raw})
    assert caught.value.code == "invalid_parameter"


def test_skip_and_offset_together_are_refused() -> None:
    with pytest.raises(Invalid):
        query(skip="1", offset="1")


@pytest.mark.parametrize(("raw", "descending"), [("time", False), ("-time", True)])
def test_sort(raw: str, descending: bool) -> None:
    assert query(sort=raw).descending is descending


@pytest.mark.parametrize(
    "raw",
    ["", "-", "$where", "-$where", "a.b", "-a\x00", '{"time": 2}', '{"time": "up"}', '{"time": true}', "{}", '{"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}',
     '{"_id": 1, "id": -1}', '{"$natural": 1}', '{"a.b": 1}', "{", '["time"]', '[["time", 1, 2]]', "[]"],
)
def test_bad_sort(raw: str) -> None:
    with pytest.raises(Invalid) as caught:
        query(sort=raw)
    assert caught.value.code == "invalid_parameter"


@pytest.mark.parametrize("name", ["limt", "page", "where", "$where", "property", "Limit"])
def test_unknown_parameter_is_refused(name: str) -> None:
    with pytest.raises(Invalid) as caught:
        query(**{name: "1"})
    assert caught.value.code == "unknown_parameter"


def test_extra_parameters_are_allowed_when_named() -> None:
    assert list_query(MultiDict(q="x"), extra=("q",)).limit == DEFAULT_LIMIT


@pytest.mark.parametrize("name", ["limit", "sort", "filter", "cursor", "skip"])
def test_repeated_parameter_is_refused(name: str) -> None:
    with pytest.raises(Invalid) as caught:
        query((name, "1"), (name, "2"))
    assert caught.value.code == "invalid_parameter"


def test_property_parameters() -> None:
    assert query(**{"property.camera": "x100"}).conditions == (Condition("camera", "$eq", "x100"),)
    # Repeated property.KEY means any of the values.
    repeated = query(("property.tag", "a"), ("property.tag", "b"), ("property.tag", "c"))
    assert repeated.conditions == (Condition("tag", "$in", ["a", "b", "c"]),)


@pytest.mark.parametrize("name", ["property.", "property.$where", "property.a.b", "property.a\x00"])
def test_bad_property_parameter(name: str) -> None:
    with pytest.raises(Invalid) as caught:
        query(**{name: "1"})
    assert caught.value.code == "invalid_parameter"


def test_property_and_filter_conditions_combine() -> None:
    parsed = query(**{"property.a": "1", "filter": '{"b": {"$gt": 2}}'})
    assert set(parsed.conditions) == {Condition("a", "$eq", "1"), Condition("b", "$gt", 2)}


CURSOR = Cursor(time=datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=timezone.utc), id="0123456789abcdef01234567")


@pytest.mark.parametrize("descending", [True, False])
def test_cursor_round_trip(descending: bool) -> None:
    raw = encode_cursor(CURSOR, descending)
    assert "=" not in raw and "/" not in raw and "+" not in raw  # safe in a query string as it is
    assert decode_cursor(raw, descending) == CURSOR
    parsed = query(cursor=raw, sort="-time" if descending else "time")
    assert parsed.after == CURSOR


def test_cursor_from_the_other_sort_order_is_refused() -> None:
    raw = encode_cursor(CURSOR, True)
    with pytest.raises(Invalid) as caught:
        query(cursor=raw, sort="time")
    assert caught.value.code == "invalid_cursor"
    with pytest.raises(Invalid):
        decode_cursor(encode_cursor(CURSOR, False), True)


def _b64(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda raw: raw[:-4], id="cut"),
        pytest.param(lambda raw: raw[:-1], id="cut-1"),
        pytest.param(lambda raw: raw + "A", id="appended"),
        pytest.param(lambda raw: "!" + raw[1:], id="bad-char"),
        pytest.param(lambda raw: "", id="empty"),
        pytest.param(lambda raw: "not-a-cursor", id="garbage"),
        pytest.param(lambda raw: _b64([]), id="list"),
        pytest.param(lambda raw: _b64({"t": "then", "i": "0" * 24, "d": True}), id="bad-time"),
        pytest.param(lambda raw: _b64({"t": "2024-05-01T12:00:00Z", "i": "../x", "d": True}), id="bad-id"),
        pytest.param(lambda raw: _b64({"t": "2024-05-01T12:00:00Z", "i": "0" * 24}), id="no-order"),
        pytest.param(lambda raw: _b64({"t": "2024-05-01T12:00:00Z", "i": "0" * 24, "d": "true"}), id="order-not-bool"),
        pytest.param(lambda raw: _b64({"t": "9999-12-31T23:59:59-05:00", "i": "0" * 24, "d": True}), id="time-overflow"),
        pytest.param(lambda raw: _b64({"t": 5, "i": 5, "d": True}), id="numbers"),
    ],
)
def test_tampered_cursor_is_refused(tamper: Any) -> None:
    with pytest.raises(Invalid) as caught:
        query(cursor=tamper(encode_cursor(CURSOR, True)))
    assert caught.value.code == "invalid_cursor"


def test_cursor_and_skip_do_not_combine() -> None:
    raw = encode_cursor(CURSOR, True)
    with pytest.raises(Invalid) as caught:
        query(cursor=raw, skip="5")
    assert caught.value.code == "invalid_parameter"
    assert query(cursor=raw, skip="0").after == CURSOR


# --- file names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "passwd"),
        ("/abs/path/photo.jpg", "photo.jpg"),
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
        ("dir\\..\\photo.jpg", "photo.jpg"),
        ('say "cheese".jpg', "say _cheese_.jpg"),
        ("a\x00b\x1fc\x7fd.png", "a_b_c_d.png"),
        ("tab\there.png", "tab_here.png"),
        ("  spaced.png  ", "spaced.png"),
        ("été.png", "été.png"),
        ("e\u0301te\u0301.png", "été.png"),  # NFC
    ],
)
def test_sanitize_filename(raw: str, expected: str) -> None:
    assert sanitize_filename(raw, "fallback.bin") == expected


@pytest.mark.parametrize(
    "raw",
    ["x.jpg\r\nSet-Cookie: session=stolen", "x.jpg\nContent-Type: text/html", "x\r.jpg", "a\r\n\r\n<script>"],
)
def test_sanitize_filename_stops_header_injection(raw: str) -> None:
    name = sanitize_filename(raw, "fallback.bin")
    assert "\r" not in name and "\n" not in name
    assert name


@pytest.mark.parametrize("raw", [None, "", "/", "dir/", "..", "...", " . ", "a/..", "\\"])
def test_sanitize_filename_falls_back_when_nothing_is_left(raw: str | None) -> None:
    assert sanitize_filename(raw, "fallback.bin") == "fallback.bin"


def test_sanitize_filename_caps_the_length() -> None:
    name = sanitize_filename("n" * 300 + ".jpg", "fallback.bin")
    assert 0 < len(name) <= 255
    assert set(name) <= set("n.jpg")
