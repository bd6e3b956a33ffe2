"""The `BlobStore` contract, run against every backend through the `blob_store` fixture."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import aiohttp
import pytest

from gateway.app import create_app
from gateway.errors import BlobNotFound, Conflict, Forbidden, Invalid
from gateway.storage.signing import UrlSigner
from gateway.storage.base import BlobStore, object_key, rendition_key, rendition_prefix
from gateway.storage.filesystem import DOWNLOAD_ROUTE, FilesystemBlobStore
from tests.helpers import make_config
from tests.protocols import assert_implements

MiB = 1024 * 1024
# Larger than the default 8 MiB part size (and S3's 5 MiB minimum), so S3 backends upload in parts.
LARGE_BODY = os.urandom(11 * MiB)


class Boom(Exception):
    """The failure a broken upload stream raises."""


def new_key(collection: str = "photos", extension: str = "png") -> str:
    return object_key(collection, secrets.token_hex(12), extension)


async def chunked(body: bytes, size: int = MiB) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def failing_after(body: bytes, size: int = MiB) -> AsyncIterator[bytes]:
    async for chunk in chunked(body, size):
        yield chunk
    raise Boom("the client went away")


async def put(store: BlobStore, key: str, body: bytes, *, content_type: str = "image/png", filename: str = "a.png") -> None:
    await store.put(key, chunked(body), content_type=content_type, filename=filename)


async def read(store: BlobStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.get(key)])


async def keys(store: BlobStore, prefix: str) -> list[str]:
    return [blob.key async for blob in store.list(prefix)]


def s3_client(store: BlobStore) -> Any:
    # Only to observe what the contract cannot: that the multipart path ran and left nothing.
    return store._client  # type: ignore[attr-defined]


def disposition_filename(header: str) -> str:
    """The name a browser would save as: RFC 6266's `filename*` when present, else `filename`."""
    params = dict(part.strip().split("=", 1) for part in header.split(";")[1:])
    if "filename*" in params:
        charset, _, encoded = params["filename*"].partition("''")
        assert charset.upper() == "UTF-8"
        return unquote(encoded, encoding="utf-8", errors="strict")
    return params["filename"].strip('"')


async def test_the_backend_implements_the_protocol(blob_store: BlobStore) -> None:
    assert_implements(blob_store, BlobStore)


# --- put / get --------------------------------------------------------------------------------


async def test_small_round_trip(blob_store: BlobStore) -> None:
    key = new_key()
    body = os.urandom(1000)
    await put(blob_store, key, body)
    assert await read(blob_store, key) == body


async def test_empty_body_round_trip(blob_store: BlobStore) -> None:
    key = new_key()
    await put(blob_store, key, b"")
    assert await read(blob_store, key) == b""


async def test_large_round_trip_uses_multipart(blob_store: BlobStore) -> None:
    key = new_key(extension="jpg")
    await put(blob_store, key, LARGE_BODY, content_type="image/jpeg", filename="big.jpg")
    assert await read(blob_store, key) == LARGE_BODY
    assert [(blob.key, blob.size) async for blob in blob_store.list(key)] == [(key, len(LARGE_BODY))]
    if blob_store.name == "s3":
        head = await s3_client(blob_store).head_object(Bucket=blob_store.bucket, Key=key)  # type: ignore[attr-defined]
        assert head["ETag"].strip('"').endswith("-2"), "expected two parts"


@pytest.mark.parametrize("size", [10, 9 * MiB], ids=["single", "multipart"])
async def test_put_never_replaces_an_existing_object(blob_store: BlobStore, size: int) -> None:
    """Keys are never reused: a second put of a key is refused and the first object stays."""
    key = new_key()
    await put(blob_store, key, b"first")
    with pytest.raises(Conflict) as refused:
        await put(blob_store, key, LARGE_BODY[:size])
    assert refused.value.code == "object_exists"
    assert await read(blob_store, key) == b"first"
    assert [blob.size async for blob in blob_store.list(key)] == [len(b"first")]


@pytest.mark.parametrize("size", [10, 9 * MiB], ids=["single", "multipart"])
async def test_failed_put_leaves_nothing(blob_store: BlobStore, size: int) -> None:
    key = new_key()
    with pytest.raises(Boom):
        await blob_store.put(key, failing_after(LARGE_BODY[:size]), content_type="image/png", filename="a.png")
    with pytest.raises(BlobNotFound):
        await read(blob_store, key)
    assert await keys(blob_store, "photos/") == []
    if blob_store.name == "s3":
        uploads = await s3_client(blob_store).list_multipart_uploads(Bucket=blob_store.bucket)  # type: ignore[attr-defined]
        assert uploads.get("Uploads", []) == []
    if isinstance(blob_store, FilesystemBlobStore):
        assert os.listdir(blob_store.root / ".tmp") == []


async def test_cancelled_put_leaves_no_temp_file(tmp_path: Path) -> None:
    """A put cancelled (a client gone) after some of its bytes were written in a worker thread
    removes its temp file."""
    store = FilesystemBlobStore(tmp_path / "objects", UrlSigner(b"k" * 32))
    written = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        for _ in range(5):  # past one write batch
            yield LARGE_BODY[: MiB // 4]
        written.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(store.put(new_key(), stalls(), content_type="image/png", filename="a.png"))
    await written.wait()
    await asyncio.sleep(0.2)  # the batch's write has run in its thread
    assert os.listdir(store.root / ".tmp") != []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert os.listdir(store.root / ".tmp") == []


@pytest.mark.parametrize("size", [10, 9 * MiB], ids=["single", "multipart"])
async def test_failed_put_keeps_the_previous_object(blob_store: BlobStore, size: int) -> None:
    key = new_key()
    await put(blob_store, key, b"original")
    with pytest.raises(Boom):
        await blob_store.put(key, failing_after(LARGE_BODY[:size]), content_type="image/png", filename="a.png")
    assert await read(blob_store, key) == b"original"


async def test_get_missing_raises(blob_store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        await read(blob_store, new_key())


# --- delete -----------------------------------------------------------------------------------


async def test_delete_is_idempotent(blob_store: BlobStore) -> None:
    key, other = new_key(), new_key()
    await put(blob_store, key, b"x")
    await put(blob_store, other, b"y")
    await blob_store.delete(key)
    with pytest.raises(BlobNotFound):
        await read(blob_store, key)
    await blob_store.delete(key)
    await blob_store.delete(new_key())
    assert await read(blob_store, other) == b"y"


async def test_delete_many_ignores_missing_keys(blob_store: BlobStore) -> None:
    first, second, kept = new_key(), new_key(), new_key()
    for key in (first, second, kept):
        await put(blob_store, key, key.encode())
    await blob_store.delete_many([first, new_key(), second, new_key()])
    await blob_store.delete_many([])
    assert await keys(blob_store, "photos/") == [kept]
    for key in (first, second):
        with pytest.raises(BlobNotFound):
            await read(blob_store, key)


# --- list -------------------------------------------------------------------------------------


async def test_list_stays_inside_the_prefix_in_key_order(blob_store: BlobStore) -> None:
    in_a = [new_key("a") for _ in range(5)]
    elsewhere = [new_key("ab"), new_key("ab"), new_key("a-b"), new_key("a.b"), new_key("b")]
    for index, key in enumerate(in_a + elsewhere):
        await put(blob_store, key, b"z" * (index + 1))

    listed = [blob async for blob in blob_store.list("a/")]
    assert [blob.key for blob in listed] == sorted(in_a)
    sizes = {key: index + 1 for index, key in enumerate(in_a)}
    assert all(blob.size == sizes[blob.key] for blob in listed)
    assert all(blob.last_modified.utcoffset() is not None for blob in listed)

    assert await keys(blob_store, "ab/") == sorted(elsewhere[:2])
    first = sorted(in_a)[0]
    assert await keys(blob_store, first[:6]) == [key for key in sorted(in_a) if key.startswith(first[:6])]
    # A prefix without its slash spans collections; the order is still the keys' byte order.
    assert await keys(blob_store, "a") == sorted(in_a + elsewhere[:4])
    assert await keys(blob_store, "c/") == []


async def test_rendition_keys_list_in_key_order_among_originals(blob_store: BlobStore) -> None:
    """`<c>/_renditions/<id>/<spec>.<ext>` nests a level deeper than originals; listings still
    give every key under a prefix in byte order ("0..." < "_renditions/" < "a..."), and deleting
    an image's renditions leaves its neighbours."""
    ids = ["0" * 24, "5" * 23 + "f", "a" * 24, "f" * 24]
    originals = [object_key("rend", ident, "jpg") for ident in ids]
    renditions = [rendition_key("rend", ident, spec, ext) for ident in ids[1:3] for spec, ext in (("w256-h256-cover-q80", "webp"), ("w64-contain", "png"))]
    for key in originals + renditions:
        await put(blob_store, key, b"r")
    assert await keys(blob_store, "rend/") == sorted(originals + renditions)
    assert await keys(blob_store, "rend") == sorted(originals + renditions)
    assert await keys(blob_store, rendition_prefix("rend", ids[1])) == sorted(renditions[:2])
    assert await keys(blob_store, renditions[0]) == [renditions[0]]
    assert await read(blob_store, renditions[0]) == b"r"
    with pytest.raises(Conflict):
        await put(blob_store, renditions[0], b"again")
    await blob_store.delete_many(renditions[:2])
    assert await keys(blob_store, "rend/") == sorted(originals + renditions[2:])
    await put(blob_store, renditions[0], b"made again")  # after its image's directory was emptied
    assert await read(blob_store, renditions[0]) == b"made again"


@pytest.mark.parametrize(("extension", "content_type"), [("avif", "image/avif"), ("webp", "image/webp")])
async def test_presigned_rendition_is_served_with_its_type(blob_store: BlobStore, extension: str, content_type: str, tmp_path: Path, aiohttp_client: Any) -> None:
    key = rendition_key("rend", "1" * 24, "w10-contain-q80", extension)
    await put(blob_store, key, b"rendered", content_type=content_type, filename=f"photo.{extension}")
    url = await blob_store.presign(key, ttl=60, content_type=content_type, filename=f"photo.{extension}")
    if isinstance(blob_store, FilesystemBlobStore):
        client = await aiohttp_client(create_app(make_config(tmp_path)))
        response = await client.get(url)
        status, headers, served = response.status, response.headers, await response.read()
    else:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            status, headers, served = response.status, response.headers, await response.read()
    assert (status, served, headers["Content-Type"]) == (200, b"rendered", content_type)


# --- presign ----------------------------------------------------------------------------------

FILENAMES = ["photo.png", "Grüße aus Köln 東京 \"quoted\".png"]


@pytest.mark.parametrize("filename", FILENAMES, ids=["ascii", "unicode"])
async def test_presigned_url_serves_the_object(
    blob_store: BlobStore, filename: str, tmp_path: Path, aiohttp_client: Any
) -> None:
    key = new_key()
    body = os.urandom(5000)
    await put(blob_store, key, body)
    url = await blob_store.presign(key, ttl=300, content_type="image/png", filename=filename)

    if isinstance(blob_store, FilesystemBlobStore):
        assert url.startswith(DOWNLOAD_ROUTE)
        split = urlsplit(url)
        blob_store.verify("GET", split.path, dict(parse_qsl(split.query)))
        # The gateway built from the same configuration serves the link.
        client = await aiohttp_client(create_app(make_config(tmp_path)))
        response = await client.get(url)
        status, headers, served = response.status, response.headers, await response.read()
    else:
        assert url.startswith(("http://", "https://"))
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            status, headers, served = response.status, response.headers, await response.read()

    assert status == 200
    assert served == body
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"].startswith("inline;")
    assert disposition_filename(headers["Content-Disposition"]) == filename


async def test_presigned_url_is_tamper_proof(
    blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["blob_store"] == "moto":
        pytest.skip("moto serves presigned URLs without checking their signatures")
    key = new_key()
    await put(blob_store, key, b"secret")
    url = await blob_store.presign(key, ttl=60, content_type="image/png", filename="a.png")
    split = urlsplit(url)
    query = dict(parse_qsl(split.query))

    if isinstance(blob_store, FilesystemBlobStore):
        signature = query["signature"]
        tampered = [
            (split.path, {**query, "signature": signature[:-1] + ("0" if signature[-1] != "0" else "1")}),
            (split.path, {**query, "filename": "other.png"}),
            (split.path, {**query, "expires": str(int(query["expires"]) + 3600)}),
            (split.path, {key: value for key, value in query.items() if key != "signature"}),
            (DOWNLOAD_ROUTE + new_key(), query),
        ]
        for path, params in tampered:
            with pytest.raises(Forbidden):
                blob_store.verify("GET", path, params)
        with pytest.raises(Forbidden):
            blob_store.verify("PUT", split.path, query)
        later = float(query["expires"]) + 1
        with monkeypatch.context() as patch:
            patch.setattr("gateway.storage.signing.time.time", lambda: later)
            with pytest.raises(Forbidden) as expired:
                blob_store.verify("GET", split.path, query)
        assert expired.value.code == "link_expired"
        # A link signed with another key is refused too.
        foreign = UrlSigner(b"k" * 32).sign(DOWNLOAD_ROUTE + key, {"filename": "a.png"}, ttl=60)
        foreign_split = urlsplit(foreign)
        with pytest.raises(Forbidden):
            blob_store.verify("GET", foreign_split.path, dict(parse_qsl(foreign_split.query)))
        return

    signature_name = "X-Amz-Signature"
    signature = query[signature_name]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    tampered_urls = [
        split._replace(query=urlencode({**query, signature_name: flipped}, quote_via=quote)).geturl(),
        url.replace(split.path, split.path.rsplit("/", 1)[0] + "/" + new_key().rsplit("/", 1)[1]),
    ]
    async with aiohttp.ClientSession() as session:
        for tampered_url in tampered_urls:
            async with session.get(tampered_url) as response:
                assert response.status == 403, tampered_url
                assert await response.read() != b"secret"


# --- ping and keys ----------------------------------------------------------------------------


async def test_ping(blob_store: BlobStore) -> None:
    await blob_store.ping()


@pytest.mark.embedded
@pytest.mark.parametrize(
    "key",
    [
        "../x",
        "a/../../b",
        "photos/../../etc/passwd",
        "/etc/passwd",
        "/photos/" + "0" * 24 + ".png",
        "photos%2F..%2F..%2Fetc%2Fpasswd",
        "photos/%2e%2e%2f" + "0" * 24 + ".png",
        "..%2f" + "0" * 24 + ".png",
        "photos/" + "0" * 24 + ".png\x00",
        "photos\x00/" + "0" * 24 + ".png",
        "photos/_renditions/../" + "0" * 24 + ".png",
        "photos/_renditions/" + "0" * 24 + "/../../../x.png",
        "photos/_renditions/" + "0" * 24 + "/a/b.png",
        "photos/_other/" + "0" * 24 + "/w1.png",
        "photos/" + "0" * 24 + ".png/../../x",
        "photos/./" + "0" * 24 + ".png",
        ".tmp/" + "0" * 24 + ".png",
        "",
    ],
)
async def test_filesystem_refuses_traversal_keys(tmp_path: Path, key: str) -> None:
    store = FilesystemBlobStore(tmp_path / "objects", UrlSigner(b"s" * 32))
    with pytest.raises(Invalid):
        store.local_path(key)
    with pytest.raises(Invalid):
        await store.presign(key, ttl=60, content_type="image/png", filename="a.png")
    with pytest.raises(Invalid):
        await store.put(key, chunked(b"x"), content_type="image/png", filename="a.png")
    assert list((tmp_path).rglob("x")) == [] and list(tmp_path.rglob("passwd")) == []


@pytest.mark.embedded
async def test_filesystem_accepts_a_well_formed_key(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "objects", UrlSigner(b"s" * 32))
    key = new_key("my.photos_2-x")
    assert store.local_path(key) == (tmp_path / "objects" / key).resolve()


# --- staged writes (resumable uploads), upload forms, head and ranges ------------------------


async def test_staged_write_in_pieces_with_a_broken_body_then_published(blob_store: BlobStore) -> None:
    from gateway.storage.base import StagedWrite

    staged = StagedWrite(secrets.token_hex(16))
    staged.key, staged.content_type, staged.filename = new_key(), "image/png", "a.png"
    reported: list[int] = []

    async def progress(state: StagedWrite) -> None:
        reported.append(state.size)

    await blob_store.append_staged(staged, chunked(LARGE_BODY[: 3 * MiB]), progress)  # type: ignore[attr-defined]
    assert staged.size == 3 * MiB and reported[-1] == 3 * MiB
    with pytest.raises(Boom):
        await blob_store.append_staged(staged, failing_after(LARGE_BODY[3 * MiB : 9 * MiB]), progress)  # type: ignore[attr-defined]
    assert staged.size == 9 * MiB  # what arrived before the break is kept
    # A request that failed after sending bytes it never reported leaves them overwritten.
    await blob_store.append_staged(staged, chunked(LARGE_BODY[9 * MiB :]), progress)  # type: ignore[attr-defined]
    assert staged.size == len(LARGE_BODY)
    assert await keys(blob_store, staged.key) == []  # nothing visible until published
    await blob_store.finish_staged(staged)  # type: ignore[attr-defined]
    assert await read(blob_store, staged.key) == LARGE_BODY
    assert [piece async for piece in blob_store.staged_pieces()] == []  # type: ignore[attr-defined]
    with pytest.raises(Conflict):
        again = StagedWrite(secrets.token_hex(16), key=staged.key)
        await blob_store.append_staged(again, chunked(b"x" * 10), progress)  # type: ignore[attr-defined]
        await blob_store.finish_staged(again)  # type: ignore[attr-defined]


async def test_a_staged_write_resumes_from_its_recorded_state_on_another_instance(blob_store: BlobStore) -> None:
    from gateway.storage.base import StagedWrite

    staged = StagedWrite(secrets.token_hex(16), key=new_key(), content_type="image/png", filename="a.png")
    states: list[dict[str, Any]] = []

    async def progress(state: StagedWrite) -> None:
        states.append(state.as_dict())

    await blob_store.append_staged(staged, chunked(LARGE_BODY[: 9 * MiB]), progress)  # type: ignore[attr-defined]
    # Only what was reported counts: a fresh copy of the last reported state carries on.
    resumed = StagedWrite.from_dict(states[-1])
    await blob_store.append_staged(resumed, chunked(LARGE_BODY[resumed.size :]), progress)  # type: ignore[attr-defined]
    await blob_store.finish_staged(resumed)  # type: ignore[attr-defined]
    assert await read(blob_store, resumed.key) == LARGE_BODY  # type: ignore[arg-type]


async def test_a_discarded_staged_write_leaves_nothing(blob_store: BlobStore) -> None:
    from gateway.storage.base import StagedWrite

    staged = StagedWrite(secrets.token_hex(16), key=new_key(), content_type="image/png", filename="a.png")

    async def progress(state: StagedWrite) -> None:
        pass

    await blob_store.append_staged(staged, chunked(LARGE_BODY[: 10 * MiB]), progress)  # type: ignore[attr-defined]
    assert [upload async for upload, _piece, _time in blob_store.staged_pieces()] == [staged.id]  # type: ignore[attr-defined]
    await blob_store.discard_staged(staged)  # type: ignore[attr-defined]
    await blob_store.discard_staged(staged)  # type: ignore[attr-defined]
    assert [piece async for piece in blob_store.staged_pieces()] == []  # type: ignore[attr-defined]
    assert await blob_store.partial_writes(datetime.now(timezone.utc) + timedelta(minutes=1)) == 0


async def test_head_and_ranges(blob_store: BlobStore) -> None:
    key = new_key()
    await put(blob_store, key, b"0123456789")
    info = await blob_store.head(key)  # type: ignore[attr-defined]
    assert (info.key, info.size) == (key, 10)
    assert b"".join([c async for c in blob_store.get_range(key, 2, 5)]) == b"234"  # type: ignore[attr-defined]
    with pytest.raises(BlobNotFound):
        await blob_store.head(new_key())  # type: ignore[attr-defined]


async def test_a_staged_write_whose_bytes_are_gone_is_refused_not_filled(blob_store: BlobStore) -> None:
    from gateway.errors import Unavailable
    from gateway.storage.base import StagedWrite

    staged = StagedWrite(secrets.token_hex(16), key=new_key(), content_type="image/png", filename="a.png")

    async def progress(state: StagedWrite) -> None:
        pass

    await blob_store.append_staged(staged, chunked(b"x" * 1000), progress)  # type: ignore[attr-defined]
    await blob_store.discard_staged(staged)  # type: ignore[attr-defined]  # as if a sweep took them
    with pytest.raises(Unavailable):
        await blob_store.append_staged(staged, chunked(b"y" * 10), progress)  # type: ignore[attr-defined]
