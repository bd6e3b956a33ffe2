"""Parsing of HTTP query parameters and bodies into validated values and `ListQuery`s.

Values leave this module either rejected with `Invalid`/`NotFound`, or in a shape the backends can
use without further checks: no key that starts with `$` or holds a `.` or NUL ever reaches a
database.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any

from gateway import jsoncodec
from gateway.errors import Invalid, NotFound
from gateway.metadata.base import iso_time, parse_iso_time
from gateway.metadata.query import DEFAULT_LIMIT, Condition, Cursor, ListQuery
from gateway.names import image_id
from gateway.properties import check_key, check_value

MAX_LIMIT = 1000
MAX_SKIP = 10_000_000
SORT_ORDERS = ("-time", "time")

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
OPERATORS = (*COMPARISONS, "$in", "$nin", "$exists")
MAX_IN_VALUES = 100
MAX_FILTER_FIELDS = 32


def parse_json(raw: bytes | str, what: str) -> Any:
    try:
        # strict=False: clients that paste base64 with its line breaks into a JSON string
        # (seed 000's curl flow) send raw control characters inside strings.
        return jsoncodec.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Invalid(f"{what} is not valid JSON", code="invalid_json") from None
    except RecursionError:
        # The decoder recurses per nesting level; a body of brackets must not become a 500.
        raise Invalid(f"{what} nests too deeply", code="invalid_json") from None


def parse_time(raw: Any, where: str) -> datetime:
    if not isinstance(raw, str):
        raise Invalid(f"{where}: times are ISO 8601 strings", code="invalid_filter")
    try:
        return parse_iso_time(raw)
    except ValueError:
        raise Invalid(f"{where}: not an ISO 8601 time", code="invalid_filter") from None
    except OverflowError:  # 9999-12-31T23:00-05:00 is past year 9999 in UTC
        raise Invalid(f"{where}: time out of range", code="invalid_filter") from None


def _scalar(value: Any, where: str, code: str = "invalid_filter") -> Any:
    if isinstance(value, (dict, list)):
        raise Invalid(f"{where}: filter values are strings, numbers, booleans or null", code=code)
    try:
        check_value(value, where, 0)
    except Invalid as exc:
        raise Invalid(exc.message, code=code) from None
    return value


def _condition(field: str, op: str, value: Any) -> Condition:
    where = f"filter.{field}"
    if op not in OPERATORS:
        raise Invalid(f"{where}: operator {op!r} is not allowed (allowed: {', '.join(OPERATORS)})", code="invalid_filter")
    if op == "$exists":
        if not isinstance(value, bool):
            raise Invalid(f"{where}: $exists takes true or false", code="invalid_filter")
        return Condition(field, op, value)
    if op in ("$in", "$nin"):
        if not isinstance(value, list) or len(value) > MAX_IN_VALUES:
            raise Invalid(f"{where}: {op} takes a list of at most {MAX_IN_VALUES} values", code="invalid_filter")
        items = [parse_time(v, where) if field == "time" else _scalar(v, where) for v in value]
        return Condition(field, op, items)
    if field == "time":
        return Condition(field, op, parse_time(value, where))
    return Condition(field, op, _scalar(value, where))


def parse_filter(raw: str) -> tuple[Condition, ...]:
    document = parse_json(raw, "filter")
    if not isinstance(document, dict):
        raise Invalid("filter must be a JSON object", code="invalid_filter")
    if len(document) > MAX_FILTER_FIELDS:
        raise Invalid(f"filter names at most {MAX_FILTER_FIELDS} fields", code="invalid_filter")
    conditions: list[Condition] = []
    for field, spec in document.items():
        if field != "time":
            try:
                check_key(field, "filter")
            except Invalid as exc:
                raise Invalid(exc.message, code="invalid_filter") from None
        if isinstance(spec, dict):
            if not spec:
                raise Invalid(f"filter.{field}: empty operator object", code="invalid_filter")
            conditions.extend(_condition(field, op, value) for op, value in spec.items())
        else:
            conditions.append(_condition(field, "$eq", spec))
    return tuple(conditions)


def _integer(raw: str, name: str, low: int, high: int) -> int:
    if not re.fullmatch(r"[0-9]{1,12}", raw):  # not \d: that takes "١٠" and "１０" too
        raise Invalid(f"{name} must be a whole number from {low} to {high}", code="invalid_parameter")
    value = int(raw)
    if not low <= value <= high:
        raise Invalid(f"{name} must be a whole number from {low} to {high}", code="invalid_parameter")
    return value


def encode_cursor(cursor: Cursor, descending: bool) -> str:
    payload = json.dumps({"t": iso_time(cursor.time), "i": cursor.id, "d": descending}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(raw: str, descending: bool) -> Cursor:
    try:
        payload = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        cursor = Cursor(time=parse_time(payload["t"], "cursor"), id=image_id(payload["i"]))
        same_order = payload["d"] is descending
    except (binascii.Error, ValueError, KeyError, TypeError, Invalid, NotFound):
        raise Invalid("cursor is not one this service issued", code="invalid_cursor") from None
    if not same_order:
        raise Invalid("cursor was issued for the other sort order", code="invalid_cursor")
    return cursor


def list_query(params: Any, *, extra: tuple[str, ...] = ()) -> ListQuery:
    """Parse seed 001's list parameters: limit, skip|offset, sort, filter, cursor, property.KEY."""
    allowed = {"limit", "skip", "offset", "sort", "filter", "cursor", *extra}
    conditions: list[Condition] = []
    for name in params.keys():
        if name.startswith("property."):
            key = name[len("property.") :]
            try:
                check_key(key, "property")
            except Invalid as exc:
                raise Invalid(exc.message, code="invalid_parameter") from None
        elif name not in allowed:
            raise Invalid(f"unknown query parameter {name[:64]!r}", code="unknown_parameter")
    for name in set(params.keys()):
        values = params.getall(name)
        if name.startswith("property."):
            # Repeated property.KEY=VALUE means any of the values.
            field = name[len("property.") :]
            checked = [_scalar(v, name, "invalid_parameter") for v in values]
            conditions.append(Condition(field, "$in", checked) if len(checked) > 1 else Condition(field, "$eq", checked[0]))
        elif len(values) > 1:
            raise Invalid(f"{name} is given more than once", code="invalid_parameter")
    limit = _integer(params["limit"], "limit", 1, MAX_LIMIT) if "limit" in params else DEFAULT_LIMIT
    if "skip" in params and "offset" in params:
        raise Invalid("give skip or offset, not both", code="invalid_parameter")
    skip_raw = params.get("skip", params.get("offset"))
    skip = _integer(skip_raw, "skip", 0, MAX_SKIP) if skip_raw is not None else 0
    sort = params.get("sort", "-time")
    if sort not in SORT_ORDERS:
        raise Invalid("sort must be 'time' or '-time'", code="invalid_parameter")
    descending = sort == "-time"
    if "filter" in params:
        conditions.extend(parse_filter(params["filter"]))
    after = decode_cursor(params["cursor"], descending) if "cursor" in params else None
    if after is not None and skip:
        raise Invalid("cursor and skip cannot be combined", code="invalid_parameter")
    return ListQuery(conditions=tuple(conditions), limit=limit, skip=skip, descending=descending, after=after)


def no_query(params: Any, allowed: tuple[str, ...] = ()) -> None:
    for name in params.keys():
        if name not in allowed:
            raise Invalid(f"unknown query parameter {name[:64]!r}", code="unknown_parameter")
