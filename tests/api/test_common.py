"""Helpers shared by both APIs: lenient base64 decoding and If-Match parsing."""

from __future__ import annotations

import base64
import random
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.api.common import decode_base64, if_match_version
from gateway.errors import Invalid
from gateway.api.params import parse_json
from tests.helpers import make_image

DATA = random.Random(5).randbytes(1000)
IMAGE_ID = "0123456789abcdef01234567"

# --- base64 --------------------------------------------------------------------------------------


def test_plain_base64() -> None:
    assert decode_base64(base64.b64encode(DATA).decode()) == DATA


def test_base64_pasted_by_the_shell_into_json() -> None:
    # echo '{"data": "'$(base64 f)'"}': the unquoted $(...) turns base64's line breaks into spaces.
    wrapped = base64.encodebytes(DATA).decode()
    assert "\n" in wrapped.rstrip("\n")
    body = '{"data": "' + " ".join(wrapped.split()) + '"}'
    assert decode_base64(parse_json(body.encode(), "body")["data"]) == DATA


def test_base64_with_its_line_breaks_inside_a_json_string() -> None:
    # echo "{\"data\": \"$(base64 f)\"}": the line breaks arrive raw inside the JSON string.
    body = '{"data": "' + base64.encodebytes(DATA).decode() + '"}'
    assert decode_base64(parse_json(body.encode(), "body")["data"]) == DATA
    crlf = base64.encodebytes(DATA).decode().replace("\n", "\r\n")
    assert decode_base64("\t" + crlf + "  ") == DATA


def test_url_safe_alphabet() -> None:
    data = bytes([0xFB, 0xFF, 0xBF]) * 10 + DATA
    urlsafe = base64.urlsafe_b64encode(data).decode()
    assert "-" in urlsafe and "_" in urlsafe
    assert decode_base64(urlsafe) == data
    assert decode_base64(urlsafe.rstrip("=")) == data


@pytest.mark.parametrize("data", [b"a", b"ab", b"abc", b"abcd", DATA[:998], DATA[:999]])
def test_missing_padding(data: bytes) -> None:
    assert decode_base64(base64.b64encode(data).decode().rstrip("=")) == data


@pytest.mark.parametrize(
    "prefix",
    ["data:image/png;base64,", "data:;base64,", "data:image/svg+xml;charset=utf-8;base64,", "data:application/octet-stream;base64,"],
)
def test_data_url(prefix: str) -> None:
    image = make_image("png")
    assert decode_base64(prefix + base64.b64encode(image).decode()) == image


@pytest.mark.parametrize(
    "value",
    [
        "abc$def",
        "Zm9v*",
        "Zm9v!YmFy",
        "Zm9v\x00",
        "Zm9vYmFyé",
        "QUJDR",  # one character too many: no byte boundary
        "QQ==QQ==",  # padding in the middle
        "====",
        "data:text/plain,hello",  # a data: URL that is not base64
        "data:image/png;base64,%%%%",
    ],
)
def test_invalid_base64(value: str) -> None:
    with pytest.raises(Invalid) as caught:
        decode_base64(value)
    assert caught.value.code == "invalid_base64"
    assert caught.value.status == 400


@pytest.mark.parametrize("value", [None, "", 123, ["QUJD"], {"data": "QUJD"}, b"QUJD"])
def test_data_must_be_a_non_empty_string(value: Any) -> None:
    with pytest.raises(Invalid) as caught:
        decode_base64(value)
    assert caught.value.code == "invalid_base64"


# --- If-Match ------------------------------------------------------------------------------------


def if_match(value: str | None) -> int | None:
    headers = {} if value is None else {"If-Match": value}
    return if_match_version(make_mocked_request("PATCH", f"/images/{IMAGE_ID}", headers=headers), IMAGE_ID)


@pytest.mark.parametrize(
    ("header", "version"),
    [
        (None, None),
        ("*", None),
        (" * ", None),
        (f'"{IMAGE_ID}.3"', 3),
        (f'W/"{IMAGE_ID}.3"', 3),
        (f' "{IMAGE_ID}.12" ', 12),
    ],
)
def test_if_match_version(header: str | None, version: int | None) -> None:
    assert if_match(header) == version


@pytest.mark.parametrize(
    "header",
    [
        f'"{"f" * 24}.3"',  # another image's tag
        f"{IMAGE_ID}.3",  # unquoted
        f'"{IMAGE_ID}"',
        f'"{IMAGE_ID}.x"',
        f'"{IMAGE_ID.upper()}.3"',
        "",
        "garbage",
    ],
)
def test_if_match_that_can_never_match(header: str) -> None:
    assert if_match(header) == -1


# --- image URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{"Host": "127.0.0.1:8080"}, {"Host": "[::1]:80"}, {"Host": "bücher.example"}, {"Host": "a", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "pub.example:8443"}]
)
@pytest.mark.parametrize("collection, ident", [("bench", IMAGE_ID), ("a.b_c-d", IMAGE_ID.upper()), ("we ird", "x/y"), ("..", "%2e")])
def test_image_url_as_text_is_the_url_yarl_builds(tmp_path: Any, headers: dict[str, str], collection: str, ident: str) -> None:
    from gateway.api.common import absolute, image_route, image_url
    from gateway.app import create_app
    from gateway.config import load_config
    from gateway.metadata.base import ImageRecord, utcnow

    overrides = {"data_dir": str(tmp_path), "storage": {"backend": "filesystem"}, "metadata": {"backend": "sqlite"}, "server": {"trust_forwarded_headers": True}}
    app = create_app(load_config(environ={}, overrides=overrides))
    request = make_mocked_request("GET", "/", headers=headers, app=app)
    now = utcnow()
    record = ImageRecord(collection, ident, "x.jpg", now, now, "image/jpeg", "jpeg", 1, 1, 1, "0" * 64, "k")
    assert image_url(request, record) == absolute(request, image_route(request, record))


# --- multipart part names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "disposition",
    [
        'form-data; name="image"; filename="a.jpg"',
        "form-data; name=image",
        "form-data; name=\"json\"",
        "form-data; name=\"image\"; filename*=UTF-8''%C3%A9t%C3%A9.png",
        'form-data; name="image"; filename="a\\"b.png"',
        'form-data; filename="only.png"',
        "form-data",
        None,
    ],
)
async def test_part_names_parsed_once_are_aiohttps(disposition: str | None) -> None:
    from aiohttp import BodyPartReader
    from multidict import CIMultiDict, CIMultiDictProxy

    from gateway.api.common import _parse_names

    headers = CIMultiDict({"Content-Type": "image/png"})
    if disposition is not None:
        headers["Content-Disposition"] = disposition

    def part() -> BodyPartReader:
        return BodyPartReader(b"--b", CIMultiDictProxy(headers), None)  # type: ignore[arg-type]

    ours, theirs = part(), part()
    _parse_names(ours)
    assert (ours.name, ours.filename) == (theirs.name, theirs.filename)


# --- documents and their links, as cached ------------------------------------------------------


def _app(tmp_path: Any, **server: Any) -> Any:
    from gateway.app import create_app
    from gateway.config import load_config

    overrides = {"data_dir": str(tmp_path), "storage": {"backend": "filesystem"}, "metadata": {"backend": "sqlite"}, "server": server}
    return create_app(load_config(environ={}, overrides=overrides))


@pytest.mark.parametrize(
    "target, host",
    [
        ("/x", "127.0.0.1:8080"), ("/x", "EXAMPLE.org:80"), ("/x", "[::1]:80"), ("/x", "bücher.example"),
        # The target's own authority wins over Host: never answered from what Host alone made.
        ("http://other.example:9000/x", "other.example"), ("//evil.example/x", "127.0.0.1:8080"),
    ],
)  # fmt: skip
def test_the_cached_origin_is_the_one_yarl_builds_for_each_request(tmp_path: Any, target: str, host: str) -> None:
    from gateway.api.common import origin

    app = _app(tmp_path)
    for _ in range(2):  # the second time from the cache, where it is cached
        warm = make_mocked_request("GET", "/", headers={"Host": host}, app=app)
        assert str(origin(warm)) == str(warm.url.origin())
        request = make_mocked_request("GET", target, headers={"Host": host}, app=app)
        try:
            expected = str(request.url.origin())
        except ValueError:  # (a mocked "//host/x" target is a URL without a scheme)
            with pytest.raises(ValueError):
                origin(request)
        else:
            assert str(origin(request)) == expected


@pytest.mark.parametrize("owner, orientation", [(None, None), ("ann", 6), ("bob", 1)])
def test_a_document_is_the_records_json_with_its_links(tmp_path: Any, owner: str | None, orientation: int | None) -> None:
    from datetime import datetime, timedelta, timezone

    from gateway.api.common import document, image_url
    from gateway.images import displayed_size
    from gateway.metadata.base import ImageRecord

    app = _app(tmp_path)
    request = make_mocked_request("GET", "/", headers={"Host": "h:1"}, app=app)
    # Two instants written in other offsets: the same times in UTC, as `to_json` gives them.
    taken = datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    for when in (taken, taken.astimezone(timezone.utc), taken + timedelta(milliseconds=1)):
        record = ImageRecord(
            "bench", IMAGE_ID, "x.jpg", when, when, "image/jpeg", "jpeg", 30, 20, 7, "0" * 64, "bench/k.jpg", {"a": [1]}, owner, 3, orientation,
        )  # fmt: skip
        data = record.to_json()
        expected: dict[str, Any] = {"_id": record.id, **{k: data[k] for k in (
            "id", "collection", "image", "time", "content_type", "format", "width", "height", "size", "sha256", "properties", "updated_at", "path",
        )}}  # fmt: skip
        expected["width"], expected["height"] = displayed_size(30, 20, orientation)
        expected.update(pixel_width=30, pixel_height=20, orientation=orientation)
        expected["url"] = image_url(request, record)
        expected["thumbnail_url"] = expected["url"] + "?preset=thumb"
        if owner is not None:
            expected["owner"] = owner
        got = document(request, record)
        assert list(got.items()) == list(expected.items())
