"""The one error tree. Each class carries its HTTP status; `middlewares.py` maps it to JSON.

Backends translate vendor exceptions into these at their boundary, so the service and the
handlers never import botocore or pymongo.
"""

from __future__ import annotations


# nginx's status for a request the client abandoned before the answer; only logs and metrics
# ever carry it.
CLIENT_CLOSED_REQUEST = 499


class GatewayError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class Invalid(GatewayError):
    status = 400
    code = "invalid_request"


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class BlobNotFound(NotFound):
    code = "object_not_found"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class PreconditionFailed(GatewayError):
    status = 412
    code = "precondition_failed"


class Unprocessable(GatewayError):
    """Well-formed but not acceptable: an Idempotency-Key reused for a different request."""

    status = 422
    code = "unprocessable"


class ChecksumMismatch(GatewayError):
    """tus's checksum extension: the body does not match its Upload-Checksum."""

    status = 460
    code = "checksum_mismatch"


class RequestTimeout(GatewayError):
    status = 408
    code = "body_timeout"


class TooLarge(GatewayError):
    status = 413
    code = "too_large"


class Unsupported(GatewayError):
    status = 415
    code = "unsupported_media_type"


class Unavailable(GatewayError):
    """A dependency (object store, database, identity service) failed or timed out."""

    status = 503
    code = "unavailable"


class ConfigError(Exception):
    """A bad configuration value; the message names the key."""
