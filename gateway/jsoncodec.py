"""JSON in and out of HTTP bodies, through orjson: encoding a page of 50 documents with the
standard library costs several times the CPU of the rest of a list request.

Parsing keeps the standard library's semantics exactly: orjson answers the common case; what it
refuses (raw control characters inside strings, which clients pasting base64 send; NaN literals;
nesting past its depth limit), and any text with an integer that may not fit in 64 bits, goes to
`json.loads`, which accepts or rejects it as before.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from aiohttp import web

_LONG_DIGITS = re.compile(r"[0-9]{19}")
_LONG_DIGITS_BYTES = re.compile(rb"[0-9]{19}")

def dumps(value: Any) -> bytes:
    """UTF-8 JSON. Values orjson does not take (integers past 64 bits, non-string keys) go
    through the standard library, so nothing that encoded before fails now."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(raw: bytes | str) -> Any:
    """`json.loads(raw, strict=False)`, faster; raises what it raises."""
    # orjson reads an integer past 64 bits as a float, where the standard library keeps it an
    # int (which validation then refuses); a run of 19 digits anywhere sends the text there.
    long_digits = _LONG_DIGITS_BYTES.search(raw) if isinstance(raw, (bytes, bytearray)) else _LONG_DIGITS.search(raw)
    if long_digits is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw, strict=False)


def json_response(data: Any, *, status: int = 200, headers: Any = None) -> web.Response:
    """`web.json_response` with orjson's encoder and the same Content-Type."""
    return web.Response(body=dumps(data), status=status, headers=headers, content_type="application/json", charset="utf-8")
