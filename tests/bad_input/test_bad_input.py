"""The table-driven bad-input suite, on embedded and on MinIO+FerretDB.

Every case names a request, the status and error code it must get, and is checked to leave
everything stored as it was: the collections, each record (id, name, properties, update time)
and each object key. Any 5xx or non-JSON error fails the case.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import struct
import zlib
from urllib.parse import quote
from dataclasses import dataclass
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from tests.helpers import APP_BACKENDS, app_overrides, jpeg, make_config, make_image, noisy_jpeg, png, png_header_claiming
from tests.bad_input.requests import Body, Part, image_form, multipart, send
from tests.bad_input.state import SEEDED_COLLECTION, SEEDED_PROPERTIES, stored_state

MAX_UPLOAD = 64 * 1024
MAX_PROPERTIES = 4 * 1024
MAX_FIELDS = 8
MAX_PIXELS = 1_000_000

C = SEEDED_COLLECTION
ID = "{id}"  # replaced by the seeded image's id


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    code: str
    body: Body | None = None


def cases(table: list[Case]) -> list[Any]:
    return [pytest.param(case, id=case.name) for case in table]


# --- path traversal and malformed names, on every route family --------------------------------

BAD_COLLECTIONS = {
    "dotdot": "..",
    "dot": ".",
    "pct-dotdot": "%2e%2e",
    "pct-dotdot-upper": "%2E%2E",
    "dotdot-slash": "..%2F..%2Fetc",
    "pct-slash": "a%2Fb",
    "pct-dotdot-pct-slash": "%2e%2e%2f%2e%2e%2fpasswd",
    "backslash": "..%5C..%5Cwindows",
    "nul": "a%00b",
    "overlong-utf8-dot": "%C0%AE%C0%AE",
    "invalid-utf8": "%FF%FE",
    "too-long": "x" * 64,
    "much-too-long": "y" * 2000,
    "uppercase": "Seeded",
    "leading-dash": "-seeded",
    "inner-dotdot": "a..b",
    "space": "a%20b",
    "crlf": "a%0D%0AX-Injected:%201",
}
COLLECTION_ROUTES = [
    ("GET", "/collections/{c}", None),
    ("DELETE", "/collections/{c}", None),
    ("GET", "/collections/{c}/images", None),
    ("POST", "/collections/{c}/images", Body.form(image_form(png()))),
    ("POST", "/collections/{c}/documents", Body.form(image_form(png()))),
    ("GET", "/collections/{c}/images/{id}", None),
    ("PUT", "/collections/{c}/images/{id}", Body.json({"label": "dog"})),
    ("PATCH", "/collections/{c}/items/{id}", Body.json({"label": "dog"})),
    ("DELETE", "/collections/{c}/images/{id}", None),
    ("GET", "/collections/{c}/images/{id}/image", None),
    ("GET", "/collections/{c}/export", None),
]
TRAVERSAL_COLLECTIONS = [
    Case(f"{method}-{route.replace('{c}', 'C').replace('{id}', 'ID')}-{label}", method, route.format(c=raw, id=ID), 400, "invalid_collection", body)
    for label, raw in BAD_COLLECTIONS.items()
    for method, route, body in COLLECTION_ROUTES
]

BAD_IDS = {
    "dotdot": "..",
    "pct-dotdot": "%2e%2e",
    "dotdot-slash": "..%2F..%2Fseeded",
    "pct-slash": "%2F",
    "backslash": "..%5C..%5C",
    "nul": "%00",
    "id-then-nul": "0123456789abcdef01234567%00",
    "id-then-traversal": "0123456789abcdef01234567%2F..",
    "too-long": "a" * 25,
    "much-too-long": "b" * 5000,
    "not-hex": "zzzzzzzzzzzzzzzzzzzzzzzz",
    "operator": "%24where",
}
ID_ROUTES = [
    ("GET", f"/collections/{C}/images/{{i}}", None),
    ("GET", f"/collections/{C}/images/{{i}}/info", None),
    ("PUT", f"/collections/{C}/images/{{i}}", Body.json({"label": "dog"})),
    ("PATCH", f"/collections/{C}/documents/{{i}}", Body.json({"label": "dog"})),
    ("DELETE", f"/collections/{C}/images/{{i}}", None),
    ("GET", f"/collections/{C}/images/{{i}}/file", None),
    ("GET", "/v1/images/{i}", None),
    ("DELETE", "/v1/images/{i}", None),
    ("GET", "/v1/images/{i}/image", None),
]
TRAVERSAL_IDS = [
    Case(f"{method}-{route.replace('{i}', 'ID')}-{label}", method, route.format(i=raw), 404, "image_not_found", body)
    for label, raw in BAD_IDS.items()
    for method, route, body in ID_ROUTES
] + [
    # Braces cannot be in a route segment: no route matches at all.
    Case(f"{method}-{route.replace('{i}', 'ID')}-json-operator", method, route.format(i="%7B%22%24ne%22%3A1%7D"), 404, "not_found", body)
    for method, route, body in ID_ROUTES
]

# --- uploads: what is not an image, or not one we take ----------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _corrupt_ihdr_crc() -> bytes:
    data = bytearray(png())
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(data)


def _gif_claiming(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b",\x00\x00\x00\x00" + struct.pack("<HH", width, height) + b"\x00\x02\x02D\x01\x00;"


def _bmp_claiming(width: int, height: int) -> bytes:
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 54) + header + b"\x00" * 16


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect width="10" height="10"/></svg>'
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
NOT_IMAGES = {
    "text-as-png": (b"just some words, nothing else at all\n" * 3, b"notes.png", 415, "unsupported_image"),
    "svg-as-png": (SVG, b"logo.png", 415, "unsupported_image"),
    "svg-as-svg": (SVG, b"logo.svg", 415, "unsupported_image"),
    "html-as-jpg": (HTML, b"page.jpg", 415, "unsupported_image"),
    "pdf-as-jpg": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", b"doc.jpg", 415, "unsupported_image"),
    "zip-as-gif": (b"PK\x03\x04" + b"\x00" * 60, b"archive.gif", 415, "unsupported_image"),
    "elf-as-png": (b"\x7fELF\x02\x01\x01" + b"\x00" * 60, b"a.png", 415, "unsupported_image"),
    "short-garbage": (b"\x00\x01\x02", b"tiny.png", 415, "unsupported_image"),
    "empty": (b"", b"empty.png", 400, "empty_image"),
    # Polyglots: a page wearing an image's magic bytes, or an image carrying a page after its end.
    "html-with-gif-magic": (b"GIF89a" + HTML, b"gifar.gif", 400, "invalid_image"),
    "js-gif-polyglot": (b"GIF89a/*\x00\x00\x00\x00*/=1;alert(1);" + b"//" * 20, b"poly.gif", 400, "invalid_image"),
    "png-magic-then-html": (b"\x89PNG\r\n\x1a\n" + HTML, b"poly.png", 400, "invalid_image"),
    "jpeg-magic-then-svg": (b"\xff\xd8\xff\xe0" + SVG, b"poly.jpg", 400, "invalid_image"),
    # An image followed by a page stays an image (cameras append data after the end marker);
    # test_served_files.py shows how it is served. Only a page past the end check's reach is cut.
    "png-then-long-html": (png() + HTML * 60, b"poly.png", 400, "truncated_image"),
    "gif-then-script": (make_image("gif") + b"<script>alert(1)</script>", b"poly.gif", 400, "truncated_image"),
    "html-then-png": (HTML + png(), b"poly.png", 415, "unsupported_image"),
    # Truncated and corrupt images.
    "png-half": (png((64, 64))[: len(png((64, 64))) // 2], b"half.png", 400, "truncated_image"),
    "png-signature-only": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 12, b"sig.png", 400, "invalid_image"),
    "png-cut-in-iend-crc": (png()[:-1], b"cut.png", 400, "truncated_image"),
    "png-bad-ihdr-crc": (_corrupt_ihdr_crc(), b"crc.png", 400, "invalid_image"),
    "jpeg-cut": (jpeg((64, 64))[:-40], b"cut.jpg", 400, "truncated_image"),
    "jpeg-header-only": (jpeg()[:20], b"head.jpg", 400, "invalid_image"),
    "gif-cut": (make_image("gif", (40, 40))[:-5], b"cut.gif", 400, "truncated_image"),
    "webp-cut": (make_image("webp", (64, 64))[:-30], b"cut.webp", 400, "invalid_image"),
    "tiff-cut": (make_image("tiff", (64, 64))[:200], b"cut.tiff", 400, "truncated_image"),
    "bmp-cut": (make_image("bmp", (64, 64))[:500], b"cut.bmp", 400, "truncated_image"),
    # Pixel bombs and impossible dimensions.
    "png-bomb": (png_header_claiming(100_000, 100_000), b"bomb.png", 413, "too_many_pixels"),
    "png-just-over": (png_header_claiming(1001, 1000), b"bomb.png", 413, "too_many_pixels"),
    "png-max-int": (png_header_claiming(2**31 - 1, 2**31 - 1), b"bomb.png", 413, "too_many_pixels"),
    "png-wide-line": (png_header_claiming(2**31 - 1, 1), b"line.png", 413, "too_many_pixels"),
    "png-zero": (png_header_claiming(0, 0), b"zero.png", 400, "invalid_image"),
    "gif-bomb": (_gif_claiming(65535, 65535), b"bomb.gif", 413, "too_many_pixels"),
    "bmp-bomb": (_bmp_claiming(50_000, 50_000), b"bomb.bmp", 413, "too_many_pixels"),
    # Over the upload limit: refused while streaming.
    "oversize-jpeg": (noisy_jpeg((300, 300)), b"big.jpg", 413, "upload_too_large"),
}
UPLOADS = [
    Case(f"multipart-{label}", "POST", f"/collections/{C}/images", status, code, Body.form(image_form(data, filename)))
    for label, (data, filename, status, code) in NOT_IMAGES.items()
] + [
    Case(f"v1-{label}", "POST", "/v1/images", status, code, Body.json({"data": base64.b64encode(data).decode(), "filename": filename.decode()}))
    for label, (data, filename, status, code) in NOT_IMAGES.items()
    if label not in ("empty", "oversize-jpeg")
]

# v1 bodies: the upload must still be refused when the image itself is fine.
V1_BODIES = {
    "broken-json": (Body.raw_json('{"data": "iVBOR'), 400, "invalid_json"),
    "invalid-utf8": (Body.raw_json(b'{"data": "\xff\xfe"}'), 400, "invalid_json"),
    "array": (Body.json([1, 2]), 400, "invalid_body"),
    "string": (Body.json("x"), 400, "invalid_body"),
    "empty-body": (Body(b"", "application/json"), 400, "invalid_json"),
    "no-data": (Body.json({"filename": "a.png"}), 400, "invalid_base64"),
    "data-not-base64": (Body.json({"data": "not base64 at all!!"}), 400, "invalid_base64"),
    "data-number": (Body.json({"data": 12}), 400, "invalid_base64"),
    "unknown-field": (Body.json({"data": "AA==", "$where": "1"}), 400, "unknown_field"),
    "filename-number": (Body.json({"data": base64.b64encode(png()).decode(), "filename": 5}), 400, "invalid_body"),
    "properties-array": (Body.json({"data": base64.b64encode(png()).decode(), "properties": [1]}), 400, "invalid_properties"),
    "oversize-base64": (Body.json({"data": base64.b64encode(noisy_jpeg((300, 300))).decode()}), 413, "body_too_large"),
    "multipart-instead": (Body.form(image_form(png())), 400, "invalid_json"),
}
V1_UPLOADS = [Case(f"v1-body-{label}", "POST", "/v1/images", status, code, body) for label, (body, status, code) in V1_BODIES.items()]

# Multipart bodies that are broken, or carry what fields may not.
FILE = Part(b"image", png(), b"ok.png", b"image/png")
MULTIPART = {
    "invalid-utf8-field": (multipart(Part(b"label", b"caf\xe9 \xff"), FILE), 400, "invalid_field"),
    "invalid-utf8-json-field": (multipart(Part(b"json", b'{"label": "\xff"}'), FILE), 400, "invalid_field"),
    "broken-json-field": (multipart(Part(b"json", b'{"label": '), FILE), 400, "invalid_json"),
    "json-field-array": (multipart(Part(b"json", b"[1, 2]"), FILE), 400, "invalid_properties"),
    "json-field-too-large": (multipart(Part(b"json", json.dumps({"k": "v" * MAX_PROPERTIES}).encode()), FILE), 413, "field_too_large"),
    "field-too-large": (multipart(Part(b"label", b"v" * (MAX_PROPERTIES + 1)), FILE), 413, "field_too_large"),
    "too-many-fields": (multipart(*[Part(f"f{i}".encode(), b"1") for i in range(MAX_FIELDS + 1)], FILE), 400, "too_many_fields"),
    "no-image": (multipart(Part(b"label", b"x")), 400, "missing_image"),
    # A raw CR/LF in a file name ends the part's header line: the part is malformed.
    "crlf-in-filename": (multipart(Part(b"image", png(), b"a\r\nX-Injected: 1.png")), 400, "invalid_multipart"),
    "file-in-other-field": (multipart(Part(b"other", b"x", b"x.bin"), FILE), 400, "unexpected_file"),
    "two-images": (multipart(FILE, Part(b"image", png(seed=3), b"b.png")), 409, "multiple_images"),
    "no-closing-boundary": ((image_form(png())[0][:-30], image_form(png())[1]), 400, "truncated_image"),
    "garbage-body": ((b"this is not multipart at all", "multipart/form-data; boundary=xyz"), 400, "invalid_multipart"),
    "no-boundary": ((image_form(png())[0], "multipart/form-data"), 400, "invalid_multipart"),
    "json-content-type": ((b'{"image": "x"}', "application/json"), 415, "expected_multipart"),
    "text-content-type": ((b"image=x", "text/plain"), 415, "expected_multipart"),
    "urlencoded": ((b"image=x&label=y", "application/x-www-form-urlencoded"), 415, "expected_multipart"),
}
MULTIPARTS = [Case(f"multipart-{label}", "POST", f"/collections/{C}/images", status, code, Body.form(payload)) for label, (payload, status, code) in MULTIPART.items()]


# --- properties: operator keys at any depth, odd values, size and depth -------------------------


def _nested(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


BAD_PROPERTIES_RAW = {
    "where": '{"$where": "sleep(1000)"}',
    "set": '{"$set": {"owner": "me"}}',
    "nested-gt": '{"a": {"$gt": 1}}',
    "nested-gt-gt": '{"a": {"$gt": {"$gt": 1}}}',
    "in-list": '{"a": [1, {"$ne": null}]}',
    "deep-operator": '{"a": {"b": {"c": {"d": [{"$function": {"body": "x"}}]}}}}',
    "dotted": '{"a.b": 1}',
    "dotted-deep": '{"a": {"b.c": 1}}',
    "nul-key": '{"a\\u0000b": 1}',
    "nul-value": '{"a": "x\\u0000y"}',
    "empty-key": '{"": 1}',
    "long-key": json.dumps({"k" * 300: 1}),
    "huge-int": '{"n": 1000000000000000000000000000000}',
    "nan": '{"n": NaN}',
    "infinity": '{"n": Infinity}',
    "overflow-float": '{"n": 1e400}',
    "17-levels": _nested(17),
    "1500-levels": '{"a": ' + "[" * 1500 + "]" * 1500 + "}",
    "100000-levels": _nested(100_000),
    "huge-document": json.dumps({"k": "v" * (MAX_PROPERTIES * 4)}),
    "broken": '{"a": ',
    "trailing-garbage": '{"a": 1} {"b": 2}',
    "array": "[1, 2]",
    "string": '"x"',
    "null": "null",
    "empty": "",
    "invalid-utf8": b'{"a": "\xff\xfe"}',
}


def _property_status(label: str) -> tuple[int, str]:
    if label in ("broken", "trailing-garbage", "empty", "invalid-utf8", "1500-levels"):
        return 400, "invalid_json"
    if label in ("array", "string", "null"):
        return 400, "invalid_body"
    if label in ("huge-document", "100000-levels"):
        return 413, "body_too_large"
    if label == "17-levels" or label in ("nul-value", "huge-int", "nan", "infinity", "overflow-float"):
        return 400, "invalid_properties"
    return 400, "invalid_property_key"


PROPERTY_UPDATES = [
    Case(f"{method}-properties-{label}", method, f"/collections/{C}/images/{ID}", *_property_status(label), Body.raw_json(raw))
    for label, raw in BAD_PROPERTIES_RAW.items()
    for method in ("PUT", "PATCH")
]


def _form_status(label: str) -> tuple[int, str]:
    status, code = _property_status(label)
    if code == "invalid_body":
        return 400, "invalid_properties"
    if code == "body_too_large":
        return 413, "field_too_large"
    if label == "invalid-utf8":
        return 400, "invalid_field"
    return status, code


PROPERTY_UPLOADS = [
    Case(f"multipart-json-{label}", "POST", f"/collections/{C}/images", *_form_status(label), Body.form(multipart(Part(b"json", raw if isinstance(raw, bytes) else raw.encode()), FILE)))
    for label, raw in BAD_PROPERTIES_RAW.items()
] + [
    Case(f"v1-properties-{label}", "POST", "/v1/images", *_property_status(label), Body.raw_json(b'{"data": "' + base64.b64encode(png()) + b'", "properties": ' + (raw if isinstance(raw, bytes) else raw.encode()) + b"}"))
    for label, raw in BAD_PROPERTIES_RAW.items()
    if label not in ("empty", "broken", "trailing-garbage", "array", "string", "null", "huge-document", "100000-levels")
]

# --- filters and list parameters ---------------------------------------------------------------

BAD_FILTERS = {
    "where": {"$where": "this.a == 1"},
    "where-function": {"$where": "function() { sleep(10000); return true; }"},
    "regex": {"label": {"$regex": ".*"}},
    "regex-options": {"label": {"$regex": "^c", "$options": "i"}},
    "expr": {"$expr": {"$gt": ["$score", 1]}},
    "function": {"label": {"$function": {"body": "function() {return true}", "args": [], "lang": "js"}}},
    "or": {"$or": [{"label": "cat"}, {"score": 3}]},
    "and": {"$and": [{"label": "cat"}]},
    "nor": {"$nor": [{"label": "dog"}]},
    "gt-gt": {"a": {"$gt": {"$gt": 1}}},
    "in-operator": {"a": {"$in": [{"$gt": 1}]}},
    "in-too-many": {"a": {"$in": list(range(101))}},
    "elem-match": {"nested": {"$elemMatch": {"$gt": 1}}},
    "not": {"label": {"$not": {"$eq": "dog"}}},
    "type": {"label": {"$type": "string"}},
    "mod": {"score": {"$mod": [2, 1]}},
    "size": {"nested.deep": {"$size": 3}},
    "where-nested": {"label": {"$eq": {"$where": "1"}}},
    "dotted": {"nested.deep": "x"},
    "nul-key": {"a\x00b": 1},
    "empty-key": {"": 1},
    "empty-operator": {"a": {}},
    "exists-string": {"a": {"$exists": "yes"}},
    "time-garbage": {"time": {"$gt": "yesterday"}},
    "time-number": {"time": {"$gt": 5}},
    "time-overflow": {"time": {"$lt": "9999-12-31T23:00:00-05:00"}},
    "huge-int": {"score": 10**30},
    "too-many-fields": {f"f{i}": 1 for i in range(33)},
    "array": [{"label": "cat"}],
    "string": "label",
}
RAW_FILTERS = {
    "broken": "%7B%22a%22%3A",
    "nan": "%7B%22a%22%3ANaN%7D",
    # Deeper than the JSON decoder recurses, yet within the request line limit.
    "deep": "%5B" * 1200 + "%5D" * 1200,
}
FILTERS = [
    Case(f"filter-{label}", "GET", f"/collections/{C}/images?filter={quote(json.dumps(value))}", 400, "invalid_filter") for label, value in BAD_FILTERS.items()
] + [
    Case(f"filter-raw-{label}", "GET", f"/collections/{C}/images?filter={raw}", 400, "invalid_json" if label != "nan" else "invalid_filter")
    for label, raw in RAW_FILTERS.items()
] + [
    Case(f"property-param-{label}", "GET", f"/collections/{C}/images?{raw}", 400, "invalid_parameter")
    for label, raw in {"operator": "property.%24where=1", "dotted": "property.a.b=1", "nul": "property.a%00=1", "empty": "property.=1"}.items()
]

BAD_NUMBERS = {
    "word": "ten",
    "negative": "-1",
    "huge": str(10**30),
    "float": "1.5",
    "exponent": "1e3",
    "empty": "",
    "hex": "0x10",
    "space": "%201",
    "plus": "%2B1",
    "arabic-digits": "%D9%A1%D9%A0",
    "fullwidth-digits": "%EF%BC%91%EF%BC%90",
    "nul": "1%00",
}
LIST_ROUTES = [
    (f"/collections/{C}/images", ("limit", "skip", "offset")),
    ("/v1/images", ("limit", "offset")),
]
PAGING = [
    Case(f"{route.split('/')[1]}-{param}-{label}", "GET", f"{route}?{param}={raw}", 400, "invalid_parameter")
    for route, params in LIST_ROUTES
    for param in params
    for label, raw in BAD_NUMBERS.items()
] + [
    Case("collections-limit-zero", "GET", f"/collections/{C}/images?limit=0", 400, "invalid_parameter"),
    Case("collections-limit-over-max", "GET", f"/collections/{C}/images?limit=1001", 400, "invalid_parameter"),
    Case("collections-skip-and-offset", "GET", f"/collections/{C}/images?skip=1&offset=1", 400, "invalid_parameter"),
    Case("collections-limit-twice", "GET", f"/collections/{C}/images?limit=1&limit=2", 400, "invalid_parameter"),
    Case("collections-sort-operator", "GET", f"/collections/{C}/images?sort=%24where", 400, "invalid_parameter"),
    Case("collections-sort-document-operator", "GET", f"/collections/{C}/images?sort=%7B%22%24natural%22%3A1%7D", 400, "invalid_parameter"),
    Case("collections-sort-dotted", "GET", f"/collections/{C}/images?sort=a.b", 400, "invalid_parameter"),
    Case("collections-sort-direction", "GET", f"/collections/{C}/images?sort=%7B%22time%22%3A2%7D", 400, "invalid_parameter"),
    Case("collections-limit-aliases-together", "GET", f"/collections/{C}/images?limit=1&count=2", 400, "invalid_parameter"),
    Case("collections-skip-aliases-together", "GET", f"/collections/{C}/images?index=1&start_index=2", 400, "invalid_parameter"),
    Case("collections-batch-size-over-max", "GET", f"/collections/{C}/images?batch_size=1001", 400, "invalid_parameter"),
    Case("collections-cursor-forged", "GET", f"/collections/{C}/images?cursor=eyJ0IjoxfQ", 400, "invalid_cursor"),
    Case("collections-cursor-garbage", "GET", f"/collections/{C}/images?cursor=%24%24%24", 400, "invalid_cursor"),
    Case("v1-skip-not-offered", "GET", "/v1/images?skip=1", 400, "unknown_parameter"),
]

UNKNOWN_PARAMETER_ROUTES = [
    ("GET", "/"),
    ("GET", "/collections"),
    ("GET", f"/collections/{C}"),
    ("DELETE", f"/collections/{C}"),
    ("GET", f"/collections/{C}/images"),
    ("POST", f"/collections/{C}/images"),
    ("PUT", f"/collections/{C}/images/{ID}"),
    ("PATCH", f"/collections/{C}/images/{ID}"),
    ("DELETE", f"/collections/{C}/images/{ID}"),
    ("GET", "/v1/images"),
    ("POST", "/v1/images"),
    ("DELETE", f"/v1/images/{ID}"),
]
# Reads of one image and downloads ignore unknown parameters (tests/api/test_compat.py).


def _body_for(method: str, path: str) -> Body | None:
    if method == "POST" and path.startswith("/v1"):
        return Body.json({"data": base64.b64encode(png()).decode()})
    if method == "POST":
        return Body.form(image_form(png()))
    if method in ("PUT", "PATCH"):
        return Body.json({"label": "dog"})
    return None


UNKNOWN_PARAMETERS = [
    Case(f"unknown-{name}-{method}-{path}", method, f"{path}?{query}", 400, "unknown_parameter", _body_for(method, path))
    for method, path in UNKNOWN_PARAMETER_ROUTES
    for name, query in (("plain", "debug=1"), ("operator", "%24where=1"))
]

# --- wrong methods and content types -------------------------------------------------------------

METHODS = [
    Case(f"405-{method}-{path}", method, path, 405, "method_not_allowed", body)
    for method, path, body in [
        ("PUT", "/collections", Body.json({})),
        ("POST", "/collections", Body.json({})),
        ("POST", f"/collections/{C}", Body.json({})),
        ("PUT", f"/collections/{C}", Body.json({})),
        ("PUT", f"/collections/{C}/images", Body.json({})),
        ("POST", f"/collections/{C}/fields", Body.json({})),
        ("POST", f"/collections/{C}/images/{ID}", Body.form(image_form(png()))),
        ("DELETE", f"/collections/{C}/images/{ID}/image", None),
        ("PUT", "/v1/images", Body.json({})),
        ("DELETE", "/v1/images", None),
        ("PUT", f"/v1/images/{ID}", Body.json({"label": "dog"})),
        ("PATCH", f"/v1/images/{ID}", Body.json({"label": "dog"})),
        ("POST", f"/v1/images/{ID}", Body.json({})),
        ("DELETE", "/", None),
        ("POST", "/openapi.json", Body.json({})),
        ("DELETE", "/health", None),
    ]
]

ALL_CASES = (
    TRAVERSAL_COLLECTIONS + TRAVERSAL_IDS + UPLOADS + V1_UPLOADS + MULTIPARTS + PROPERTY_UPDATES + PROPERTY_UPLOADS
    + FILTERS + PAGING + UNKNOWN_PARAMETERS + METHODS
)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=APP_BACKENDS)
async def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[TestClient, str]]:
    """One app per backend pair for the whole table: each case checks it changed nothing, so a
    case that did change something fails itself without spoiling the next."""
    config = make_config(tmp_path_factory.mktemp("bad-input"), app_overrides(request, request.param))
    limits = dataclasses.replace(
        config.limits, max_upload_bytes=MAX_UPLOAD, max_properties_bytes=MAX_PROPERTIES, max_form_fields=MAX_FIELDS, max_image_pixels=MAX_PIXELS
    )
    async with TestClient(TestServer(create_app(dataclasses.replace(config, limits=limits)))) as client:
        body, content_type = multipart(Part(b"json", json.dumps(SEEDED_PROPERTIES).encode()), Part(b"image", png(), b"seed.png", b"image/png"))
        response = await client.post(f"/collections/{C}/images", data=body, headers={"Content-Type": content_type})
        assert response.status == 200, await response.text()
        yield client, (await response.json())["id"]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", cases(ALL_CASES))
async def test_bad_input_is_refused_and_changes_nothing(seeded: tuple[TestClient, str], case: Case, record_property: Any) -> None:
    client, image_id = seeded
    before = await stored_state(client)
    assert before["records"] and before["objects"]
    response = await send(client, case.method, case.path.replace(ID, image_id), case.body)
    text = await response.text()
    # Counted in the terminal summary (tests/conftest.py).
    record_property("bad_input_status", response.status)
    assert response.status < 500, (response.status, text[:300])
    assert response.content_type == "application/json", (response.status, response.content_type, text[:300])
    error = json.loads(text)["error"]
    assert isinstance(error["message"], str) and "Traceback" not in error["message"]
    assert (response.status, error["code"]) == (case.status, case.code), error["message"]
    if case.status == 405:
        assert response.headers.get("Allow"), "a 405 names the allowed methods"
    assert await stored_state(client) == before, "a rejected request changed what is stored"
