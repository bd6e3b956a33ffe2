"""API keys and config trees for apps with authentication on."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.auth.servers import AUDIENCE, ISSUER

WRITER_KEY, READER_KEY, OTHER_KEY = "writer-secret-key", "reader-secret-key", "other-secret-key"
API_KEYS = [
    {"name": "writer", "sha256": hashlib.sha256(WRITER_KEY.encode()).hexdigest(), "scopes": ["read", "write"]},
    {"name": "reader", "sha256": hashlib.sha256(READER_KEY.encode()).hexdigest(), "scopes": ["read"]},
    {"name": "other", "sha256": hashlib.sha256(OTHER_KEY.encode()).hexdigest(), "scopes": ["read", "write"], "collections": ["other-*"]},
]


def auth_tree(**auth: Any) -> dict[str, Any]:
    return {"auth": {"enabled": True, "api_keys": API_KEYS, **auth}}


def oidc_tree(jwks: Any, **extra: Any) -> dict[str, Any]:
    return auth_tree(oidc_jwks_uri=jwks.url, oidc_issuer=ISSUER, oidc_audience=AUDIENCE, **extra)
