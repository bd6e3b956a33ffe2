"""HMAC-signed gateway URLs: the filesystem backend's stand-in for S3 presigned links.

A signature covers the method, the path, the expiry and every other query parameter, so none of
them can be changed without the link failing with 403.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlencode

from gateway.errors import Forbidden, GatewayError


def load_or_create_secret(path: Path) -> bytes:
    """The signing key kept in the data directory, created once with 0600 permissions.

    The key is written to a temporary file first and linked into place, so no worker (nor a
    restart after a crash) ever reads a key file that is empty or half written.
    """
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    except FileExistsError:
        # Another worker created it first; use theirs.
        return _read_secret(path)
    finally:
        temporary.unlink(missing_ok=True)
    return bytes.fromhex(key)


def _read_secret(path: Path) -> bytes:
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        key = b""
    if len(key) < 16:
        raise GatewayError(f"the signing key file {path} holds no key of at least 16 hex-encoded bytes; remove it to have one made")
    return key


class UrlSigner:
    def __init__(self, secret: bytes):
        if len(secret) < 16:
            raise ValueError("signing secrets must be at least 16 bytes")
        self._secret = secret

    def _signature(self, method: str, path: str, params: Mapping[str, str]) -> str:
        canonical = "\n".join([method.upper(), path, urlencode(sorted(params.items()))])
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str, params: Mapping[str, str], *, ttl: int, method: str = "GET", now: float | None = None) -> str:
        """`path?query` carrying `expires` and `signature`."""
        signed = dict(params, expires=str(int((now or time.time()) + ttl)))
        signed["signature"] = self._signature(method, path, signed)
        # %20, not '+', for spaces: '+' does not survive every client's URL normalisation.
        return f"{path}?{urlencode(signed, quote_via=quote)}"

    def verify(self, method: str, path: str, query: Mapping[str, str], *, now: float | None = None) -> None:
        params = dict(query)
        given = params.pop("signature", "")
        expected = self._signature(method, path, params)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Forbidden("the link's signature does not match", code="invalid_signature")
        expires = params.get("expires", "")
        if not expires.isdigit() or int(expires) < (now or time.time()):
            raise Forbidden("the link has expired", code="link_expired")
