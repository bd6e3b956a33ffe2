"""JSON in and out of HTTP bodies, through orjson: encoding a page of 50 documents with the
standard library costs several times the CPU of the rest of a list request.

Parsing keeps the standard library's semantics exactly: orjson answers the common case; what it
refuses (raw control characters inside strings, which clients pasting base64 send; NaN literals;
nesting past its depth limit), and any text whose value may hold an integer that did not fit in
64 bits, goes to `json.loads`, which accepts or rejects it as before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from aiohttp import web

# orjson reads an integer literal within [-2**63, 2**64) as an int, and any other as a float,
# where the standard library keeps it an int (which validation then refuses). Such a float is at
# least 2**63 in magnitude; a value without one read every integer as the standard library does.
_INT64 = float(2**63)


def _may_hold_a_long_integer(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is float:
            if not -_INT64 < item < _INT64:  # NaN and infinities too
                return True
        elif kind is dict:
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
    return False


def dumps(value: Any) -> bytes:
    """UTF-8 JSON. Values orjson does not take (integers past 64 bits, non-string keys) go
    through the standard library, so nothing that encoded before fails now."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(raw: bytes | str) -> Any:
    """`json.loads(raw, strict=False)`, faster; raises what it raises. (The check is on the
    parsed value, not the text: scanning a base64 upload's text for long runs of digits cost
    more than parsing it.)"""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    else:
        if not _may_hold_a_long_integer(value):
            return value
    return json.loads(raw, strict=False)


def json_response(data: Any, *, status: int = 200, headers: Any = None) -> web.Response:
    """`web.json_response` with orjson's encoder and the same Content-Type."""
    return web.Response(body=dumps(data), status=status, headers=headers, content_type="application/json", charset="utf-8")
