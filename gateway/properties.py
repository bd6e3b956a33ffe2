"""Property documents: validation (keys safe for MongoDB at any depth) and JSON Merge Patch."""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import Invalid

MAX_PROPERTY_KEY_LENGTH = 256
MAX_PROPERTY_DEPTH = 16


def check_key(key: Any, where: str) -> None:
    if not isinstance(key, str) or not key:
        raise Invalid(f"{where}: property keys must be non-empty strings", code="invalid_property_key")
    if key.startswith("$") or "." in key or "\x00" in key:
        raise Invalid(
            f"{where}: property keys may not start with '$' or contain '.' or NUL",
            code="invalid_property_key",
        )
    if len(key) > MAX_PROPERTY_KEY_LENGTH:
        raise Invalid(f"{where}: property keys are at most {MAX_PROPERTY_KEY_LENGTH} characters", code="invalid_property_key")


def check_value(value: Any, where: str, depth: int) -> None:
    if depth > MAX_PROPERTY_DEPTH:
        raise Invalid(f"properties nest at most {MAX_PROPERTY_DEPTH} levels deep", code="invalid_properties")
    if isinstance(value, dict):
        for key, inner in value.items():
            check_key(key, where)
            check_value(inner, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for inner in value:
            check_value(inner, where, depth + 1)
    elif isinstance(value, str):
        if "\x00" in value:
            raise Invalid(f"{where}: strings may not contain NUL", code="invalid_properties")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise Invalid(f"{where}: numbers must be finite", code="invalid_properties")
    elif isinstance(value, int) and not isinstance(value, bool):
        # MongoDB and SQLite store 64-bit integers; larger ones would fail in the backend.
        if not -(2**63) <= value < 2**63:
            raise Invalid(f"{where}: integers must fit in 64 bits", code="invalid_properties")
    elif not (value is None or isinstance(value, bool)):
        raise Invalid(f"{where}: unsupported value", code="invalid_properties")


def validate_properties(value: Any, *, max_bytes: int) -> dict[str, Any]:
    """A property document: a JSON object whose keys, at any depth, are safe for MongoDB."""
    if not isinstance(value, dict):
        raise Invalid("properties must be a JSON object", code="invalid_properties")
    check_value(value, "properties", 0)
    if len(json.dumps(value, separators=(",", ":"))) > max_bytes:
        raise Invalid(f"properties are at most {max_bytes} bytes of JSON", code="properties_too_large")
    return value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
