"""orjson behind the standard library's semantics: every text parses to what `json.loads(...,
strict=False)` gives, or fails as it fails; every value encodes to JSON that reads back equal."""

from __future__ import annotations

import json

import pytest

from gateway import jsoncodec

TEXTS = [
    '{"a": 1, "b": [true, false, null], "c": "é\\u2028"}',
    '{"line": "ab\ncd\tef"}',  # raw control characters: seed 000's pasted base64
    '{"n": 1000000000000000000000000000000}',  # past 64 bits: an int, never a float
    '{"n": 12345678901234567890}',
    '[18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809]',
    '{"deep": [{"x": [99999999999999999999999]}], "f": 9.3e18, "g": -9.3e18, "h": 1.5}',
    '{"digits": "1234567890123456789012345", "n": 12}',  # digits in a string: no integer
    '{"n": NaN, "m": Infinity}',
    '{"x": 1e400}',
    '[' * 5000 + ']' * 5000,
    '{"a": 1, "a": 2}',
    '"\\ud800"',
    '',
    '{"a": }',
    '\ufeff{}',
]


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
@pytest.mark.parametrize("kind", [str, bytes])
def test_loads_is_the_standard_librarys(text: str, kind: type) -> None:
    raw = text if kind is str else text.encode("utf-8", "surrogatepass")
    try:
        expected: object = json.loads(raw, strict=False)
    except (ValueError, RecursionError) as exc:
        with pytest.raises(type(exc)):
            jsoncodec.loads(raw)
        return
    got = jsoncodec.loads(raw)
    assert repr(got) == repr(expected)


@pytest.mark.parametrize("value", [{"a": [1, 2.5, None, True]}, {"big": 10**30}, {1: "int key"}, ["é", "\u2028"]])
def test_dumps_reads_back(value: object) -> None:
    assert json.loads(jsoncodec.dumps(value)) == json.loads(json.dumps(value))


async def test_responses_keep_their_content_type() -> None:
    response = jsoncodec.json_response({"ok": True}, status=201, headers={"ETag": '"x"'})
    assert response.status == 201 and response.headers["ETag"] == '"x"'
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(response.body) == {"ok": True}
