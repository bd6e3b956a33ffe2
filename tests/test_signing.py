"""HMAC-signed download links and the signing key kept in the data directory."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

import gateway.storage.signing
from gateway.errors import Forbidden, GatewayError
from gateway.storage.signing import UrlSigner, load_or_create_secret

KEY = b"k" * 32
NOW = 1_700_000_000.0
PATH = "/objects/images/0123456789abcdef01234567"


def signed(signer: UrlSigner | None = None, ttl: int = 60, **params: str) -> tuple[str, dict[str, str]]:
    url = (signer or UrlSigner(KEY)).sign(PATH, params or {"filename": "a b&c.jpg"}, ttl=ttl, now=NOW)
    path, _, query = url.partition("?")
    return path, dict(parse_qsl(query, keep_blank_values=True))


def refused(path: str, query: dict[str, str], *, method: str = "GET", now: float = NOW + 1, key: bytes = KEY) -> str:
    with pytest.raises(Forbidden) as caught:
        UrlSigner(key).verify(method, path, query, now=now)
    assert caught.value.status == 403
    return caught.value.code


def test_signed_link_verifies() -> None:
    path, query = signed()
    assert path == PATH
    assert query["filename"] == "a b&c.jpg"
    assert query["expires"] == str(int(NOW) + 60)
    UrlSigner(KEY).verify("GET", path, query, now=NOW + 1)
    UrlSigner(KEY).verify("get", path, query, now=NOW + 60)  # valid through its last second


def test_signing_is_deterministic_and_key_dependent() -> None:
    assert signed() == signed()
    assert signed(UrlSigner(b"other-key-0123456789"))[1]["signature"] != signed()[1]["signature"]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p, q: (p + "x", q), id="path"),
        pytest.param(lambda p, q: (p.replace("images", "other"), q), id="path-collection"),
        pytest.param(lambda p, q: (p, {**q, "filename": "evil.html"}), id="param-changed"),
        pytest.param(lambda p, q: (p, {**q, "response-content-type": "text/html"}), id="param-added"),
        pytest.param(lambda p, q: (p, {k: v for k, v in q.items() if k != "filename"}), id="param-removed"),
        pytest.param(lambda p, q: (p, {**q, "expires": str(int(q["expires"]) + 3600)}), id="expiry-extended"),
        pytest.param(lambda p, q: (p, {**q, "expires": q["expires"] + "0"}), id="expiry-appended"),
        pytest.param(lambda p, q: (p, {k: v for k, v in q.items() if k != "expires"}), id="expiry-removed"),
        pytest.param(lambda p, q: (p, {**q, "signature": q["signature"][:-1] + ("0" if q["signature"][-1] != "0" else "1")}), id="signature-flipped"),
        pytest.param(lambda p, q: (p, {**q, "signature": q["signature"].upper()}), id="signature-uppercased"),
        pytest.param(lambda p, q: (p, {**q, "signature": q["signature"][:32]}), id="signature-short"),
        pytest.param(lambda p, q: (p, {**q, "signature": ""}), id="signature-empty"),
        pytest.param(lambda p, q: (p, {k: v for k, v in q.items() if k != "signature"}), id="signature-removed"),
        pytest.param(lambda p, q: (p, {**q, "signature": "é" * 64}), id="signature-non-ascii"),
    ],
)
def test_tampered_link_is_refused(tamper: object) -> None:
    path, query = tamper(*signed())  # type: ignore[operator]
    assert refused(path, query) == "invalid_signature"


def test_other_method_is_refused() -> None:
    assert refused(*signed(), method="PUT") == "invalid_signature"


def test_other_key_is_refused() -> None:
    assert refused(*signed(), key=b"another-key-0123456789") == "invalid_signature"


def test_expired_link_is_refused_as_expired() -> None:
    path, query = signed(ttl=60)
    assert refused(path, query, now=NOW + 61) == "link_expired"
    assert refused(path, query, now=NOW + 10 * 365 * 86400) == "link_expired"


def test_parameter_order_does_not_matter() -> None:
    path, query = signed(b="2", a="1", filename="x.jpg")
    UrlSigner(KEY).verify("GET", path, dict(reversed(list(query.items()))), now=NOW)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        UrlSigner(b"x" * 15)
    UrlSigner(b"x" * 16)


# --- the key file --------------------------------------------------------------------------------


def test_key_file_is_created_once_with_0600(tmp_path: Path) -> None:
    path = tmp_path / "data" / ".signing_key"
    key = load_or_create_secret(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()
    assert load_or_create_secret(path) == key
    assert load_or_create_secret(path) == key
    assert path.read_bytes() == content
    assert sorted(p.name for p in path.parent.iterdir()) == [".signing_key"]  # no temporary files left
    assert load_or_create_secret(tmp_path / "elsewhere" / ".signing_key") != key


def test_existing_key_file_is_used(tmp_path: Path) -> None:
    path = tmp_path / ".signing_key"
    path.write_text("ab" * 32 + "\n")
    assert load_or_create_secret(path) == bytes.fromhex("ab" * 32)


@pytest.mark.parametrize("content", ["", "\n", "not hex at all", "abcd"])
def test_unusable_key_file_is_an_error_not_an_empty_key(tmp_path: Path, content: str) -> None:
    path = tmp_path / ".signing_key"
    path.write_text(content)
    with pytest.raises(GatewayError) as caught:
        load_or_create_secret(path)
    assert str(path) in caught.value.message
    assert path.read_text() == content  # left for the operator to look at


def test_failed_write_leaves_no_key_file_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A full disk while the key is written must not leave an empty key file that every later
    # start (and every other worker) would read.
    path = tmp_path / ".signing_key"

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(gateway.storage.signing.os, "fsync", no_space)
        with pytest.raises(OSError):
            load_or_create_secret(path)
    assert list(tmp_path.iterdir()) == []
    assert len(load_or_create_secret(path)) == 32


def test_another_worker_creating_the_key_first_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / ".signing_key"
    theirs = "cd" * 32
    link = os.link

    def racing_link(src: str | Path, dst: str | Path) -> None:
        Path(dst).write_text(theirs)  # the other worker got there between our read and our link
        link(src, dst)

    monkeypatch.setattr(gateway.storage.signing.os, "link", racing_link)
    assert load_or_create_secret(path) == bytes.fromhex(theirs)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".signing_key"]
