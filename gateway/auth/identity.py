"""The identification URL client: forwards the caller's credential, caches positive answers.

The cache is a bounded LRU keyed by a SHA-256 of the credential (never the credential itself),
and concurrent misses for one credential share one call (single-flight), so a burst of requests
from one client costs one identity call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from typing import Any

import aiohttp

from gateway.errors import Unauthorized, Unavailable

log = logging.getLogger(__name__)

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="image-gateway"'}
_MAX_IDENTITY_BYTES = 64 * 1024


def credential_key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


class IdentityClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, *, timeout: float, cache_seconds: float, cache_size: int):
        self._session = session
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._pending: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def identify(self, headers: dict[str, str]) -> dict[str, Any]:
        """The identity for these forwarded headers; `Unauthorized` if refused, `Unavailable`
        if the service cannot say."""
        key = credential_key(*(f"{k}:{v}" for k, v in sorted(headers.items())))
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > time.monotonic():
                self._cache.move_to_end(key)
                return cached[1]
            del self._cache[key]
        task = self._pending.get(key)
        if task is None:
            task = self._pending[key] = asyncio.create_task(self._ask(key, headers))
            task.add_done_callback(lambda _: self._pending.pop(key, None))
        # Shielded: a caller that goes away must not cancel the call the others wait for.
        return await asyncio.shield(task)

    async def _ask(self, key: str, headers: dict[str, str]) -> dict[str, Any]:
        try:
            async with self._session.get(self._url, headers=headers, timeout=self._timeout, allow_redirects=False) as response:
                if response.status in (401, 403):
                    raise Unauthorized("the credentials were refused", code="invalid_credentials", headers=CHALLENGE)
                if not 200 <= response.status < 300:
                    log.warning("identification service answered %d", response.status)
                    raise Unavailable("the identity service cannot verify credentials now", code="identity_unavailable")
                body = await response.content.read(_MAX_IDENTITY_BYTES + 1)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("identification service unreachable (%s)", exc.__class__.__name__)
            raise Unavailable("the identity service cannot verify credentials now", code="identity_unavailable") from None
        try:
            identity = json.loads(body) if body.strip() and len(body) <= _MAX_IDENTITY_BYTES else {}
        except ValueError:
            identity = None
        if not isinstance(identity, dict):
            log.warning("identification service answered 2xx without a JSON object")
            raise Unavailable("the identity service gave an unreadable answer", code="identity_unavailable")
        if self._cache_seconds > 0:
            self._cache[key] = (time.monotonic() + self._cache_seconds, identity)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return identity
