"""Service API keys, configured by their SHA-256 and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from gateway.config import ApiKeyConfig


class ApiKeys:
    def __init__(self, keys: tuple[ApiKeyConfig, ...]):
        self._keys = keys

    def find(self, presented: str) -> ApiKeyConfig | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).hexdigest().encode()
        found = None
        # Every configured key is compared, so the time taken says nothing about which matched.
        for key in self._keys:
            if hmac.compare_digest(digest, key.sha256.encode()):
                found = key
        return found
