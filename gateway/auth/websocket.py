"""Credentials on a browser's WebSocket: carried in `Sec-WebSocket-Protocol`.

A browser's `new WebSocket(url, protocols)` can set no header but that one, and a credential in
the URL would reach access logs, proxies and browser history. So a client offers, beside the
feed's own protocol, one entry that carries the credential (the way Kubernetes' API server takes
`base64url.bearer.authorization.k8s.io.<token>`):

    new WebSocket(url, ["image-gateway.v1", "image-gateway.bearer." + base64url(token)])
    new WebSocket(url, ["image-gateway.v1", "image-gateway.apikey." + base64url(key)])

base64url (no padding) because a protocol entry must be an HTTP token, which a key or a token
need not be. The server answers with `image-gateway.v1` only, never echoing the credential. A
credential in a real header wins: the subprotocol is read only when no header carries one.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.auth.identity import CHALLENGE
from gateway.errors import Invalid, Unauthorized

PROTOCOL = "image-gateway.v1"
_BEARER = "image-gateway.bearer."
_API_KEY = "image-gateway.apikey."


def _decode(encoded: str) -> str:
    # No length check of its own: the HTTP parser already bounds a header at 8 KiB.
    if not encoded:
        raise Unauthorized("the WebSocket credential is empty", code="invalid_credentials", headers=CHALLENGE)
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        raise Unauthorized("the WebSocket credential is not base64url of UTF-8 text", code="invalid_credentials", headers=CHALLENGE) from None


def credential_headers(headers: CIMultiDictProxy[str], *, upgrade: bool) -> Mapping[str, str]:
    """The request's headers, with the credential a WebSocket upgrade carries in its
    subprotocols moved to the header the authenticator reads (`Authorization` or `X-API-Key`)."""
    if not upgrade or "Authorization" in headers or "X-API-Key" in headers:
        return headers
    offered = [p.strip() for value in headers.getall("Sec-WebSocket-Protocol", ()) for p in value.split(",")]
    carried = [p for p in offered if p.startswith((_BEARER, _API_KEY))]
    if not carried:
        return headers
    if len(carried) > 1:
        raise Unauthorized("offer one credential subprotocol, not several", code="invalid_credentials", headers=CHALLENGE)
    if PROTOCOL not in offered:
        # The server must answer with a protocol the browser offered, and it never echoes the
        # credential: without this one the browser would fail the handshake with no reason given.
        raise Invalid(f"a credential subprotocol needs {PROTOCOL!r} offered beside it", code="invalid_subprotocol")
    entry = carried[0]
    moved = CIMultiDict(headers)
    if entry.startswith(_BEARER):
        moved["Authorization"] = "Bearer " + _decode(entry[len(_BEARER):])
    else:
        moved["X-API-Key"] = _decode(entry[len(_API_KEY):])
    return moved
