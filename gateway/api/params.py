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
from gateway.metadata.base import ImageRecord, iso_time, parse_iso_time
from gateway.metadata.query import (
    BOOLEAN,
    DEFAULT_LIMIT,
    ID_FIELD,
    NUMBER,
    SHA256_FIELD,
    STRING,
    Condition,
    Cursor,
    ListQuery,
    OBJECT,
    ARRAY,
    SortCursor,
    SortKey,
    sort_position,
)
from gateway.names import IMAGE_ID_RE, image_id
from gateway.properties import check_key, check_value

# A page is bounded whatever the client asks: 1000 documents of at most `max_properties_bytes`
# of properties each.
MAX_LIMIT = 1000
MAX_SKIP = 10_000_000
MAX_SORT_KEYS = 4
MAX_IDS = MAX_LIMIT
# The original service's names: `limit` also as `batch_size` or `count`, `skip` also as
# `start_index` or `index` (and `offset`, the later API's and seed 000's).
LIMIT_NAMES = ("limit", "batch_size", "count")
SKIP_NAMES = ("skip", "start_index", "index", "offset")

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


def _image_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or IMAGE_ID_RE.fullmatch(value) is None:
        raise Invalid(f"{where}: image ids are 24 hex digits", code="invalid_filter")
    return value.lower()


def _id_condition(op: str, value: Any) -> Condition:
    where = "filter._id"
    if op in ("$eq", "$ne"):
        return Condition(ID_FIELD, op, _image_id(value, where))
    if op in ("$in", "$nin"):
        if not isinstance(value, list) or len(value) > MAX_IDS:
            raise Invalid(f"{where}: {op} takes a list of at most {MAX_IDS} ids", code="invalid_filter")
        return Condition(ID_FIELD, op, [_image_id(v, where) for v in value])
    raise Invalid(f"{where}: ids take $eq, $ne, $in or $nin", code="invalid_filter")


def _condition(field: str, op: str, value: Any) -> Condition:
    if field in ("_id", "id"):
        return _id_condition(op, value)
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
        if field not in ("time", "_id", "id"):
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


def _sort_field(name: str) -> str:
    if name == "time":
        return "time"
    if name in ("_id", "id"):
        return ID_FIELD
    try:
        check_key(name, "sort")
    except Invalid as exc:
        raise Invalid(exc.message, code="invalid_parameter") from None
    return name


_DIRECTIONS: dict[Any, bool] = {1: False, -1: True, "1": False, "-1": True, "asc": False, "desc": True, "ascending": False, "descending": True}


def _direction(value: Any, where: str) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value not in _DIRECTIONS:
        raise Invalid(f"{where}: a direction is 1 or -1 (or asc, desc)", code="invalid_parameter")
    return _DIRECTIONS[value]


def parse_sort(raw: str, order_raw: str | None = None) -> tuple[SortKey, ...]:
    """`time`, `-time`, `<field>`, `-<field>` (with `order=1|-1`, the later API's form), or the
    original's JSON sort document: `{"score": -1, "time": 1}`. A field is `time`, `_id`/`id` or
    a property key, checked as filter keys are."""
    if raw.startswith(("{", "[")):
        if order_raw is not None:
            raise Invalid("order goes with sort=<field>, not with a sort document", code="invalid_parameter")
        try:
            document = parse_json(raw, "sort")
        except Invalid as exc:
            raise Invalid(exc.message, code="invalid_parameter") from None
        # The Node driver the original used also took a list of [field, direction] pairs.
        if isinstance(document, list) and all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in document):
            pairs = [(name, value) for name, value in document]
        elif isinstance(document, dict):
            pairs = list(document.items())
        else:
            raise Invalid('a sort document is a JSON object ({"time": -1}) or a list of [field, direction] pairs', code="invalid_parameter")
        if not pairs or len(pairs) > MAX_SORT_KEYS:
            raise Invalid(f"a sort document names 1 to {MAX_SORT_KEYS} fields", code="invalid_parameter")
        keys = [SortKey(_sort_field(name), _direction(value, f"sort.{name}")) for name, value in pairs]
    else:
        descending = raw.startswith("-")
        name = raw[1:] if descending else raw
        if order_raw is not None:
            if descending:
                raise Invalid("give -field or order=-1, not both", code="invalid_parameter")
            descending = _direction(order_raw, "order")
        keys = [SortKey(_sort_field(name), descending)]
    fields = [key.field for key in keys]
    if len(set(fields)) != len(fields):
        raise Invalid("a sort names each field once (_id and id are the same field)", code="invalid_parameter")
    return tuple(keys)


def sort_values(record: ImageRecord, keys: tuple[SortKey, ...]) -> tuple[Any, ...]:
    """The record's position under `keys`, as a cursor holds it."""
    values: list[Any] = []
    for key in keys:
        if key.field == "time":
            values.append(record.time)
        elif key.field == ID_FIELD:
            values.append(record.id)
        else:
            values.append(sort_position(key.field in record.properties, record.properties.get(key.field)))
    return tuple(values)


def _spec(keys: tuple[SortKey, ...]) -> list[list[Any]]:
    return [[key.field, key.descending] for key in keys]


def encode_cursor(cursor: Cursor, descending: bool) -> str:
    payload = json.dumps({"t": iso_time(cursor.time), "i": cursor.id, "d": descending}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def next_cursor(query: ListQuery, record: ImageRecord) -> str:
    """The cursor of the page after `record` (the last of this one) under the query's order."""
    if not query.sort:
        return encode_cursor(Cursor(record.time, record.id), query.descending)
    values = [iso_time(v) if isinstance(v, datetime) else v for v in sort_values(record, query.sort)]
    payload = json.dumps({"s": _spec(query.sort), "k": values, "i": record.id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _position(raw: Any) -> tuple[int | None, Any]:
    bracket, value = raw
    if bracket is None and value is None:
        return (None, None)
    valid = (
        (bracket == NUMBER and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (bracket == STRING and isinstance(value, str))
        or (bracket == BOOLEAN and isinstance(value, bool))
        or (bracket in (OBJECT, ARRAY) and value is None)
    )
    if not valid:
        raise ValueError("not a sort position")
    check_value(value, "cursor", 0)
    return (bracket, value)


def decode_cursor(raw: str, descending: bool, sort: tuple[SortKey, ...] = ()) -> Cursor | SortCursor:
    try:
        payload = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if sort:
            same_order = payload["s"] == _spec(sort)
            values: list[Any] = []
            for key, value in zip(sort, payload["k"], strict=True):
                if key.field == "time":
                    values.append(parse_time(value, "cursor"))
                elif key.field == ID_FIELD:
                    values.append(image_id(value))
                else:
                    values.append(_position(value))
            cursor: Cursor | SortCursor = SortCursor(tuple(values), image_id(payload["i"]))
        else:
            cursor = Cursor(time=parse_time(payload["t"], "cursor"), id=image_id(payload["i"]))
            same_order = payload["d"] is descending
    except (binascii.Error, ValueError, KeyError, TypeError, Invalid, NotFound):
        raise Invalid("cursor is not one this service issued", code="invalid_cursor") from None
    if not same_order:
        raise Invalid("cursor was issued for another sort order", code="invalid_cursor")
    return cursor


def _one_of(params: Any, names: tuple[str, ...]) -> tuple[str, str] | None:
    given = [name for name in names if name in params]
    if len(given) > 1:
        raise Invalid(f"give one of {', '.join(given)}: they are the same parameter", code="invalid_parameter")
    return (given[0], params[given[0]]) if given else None


def _time_window(params: Any) -> list[Condition]:
    conditions = []
    for name, op in (("from", "$gte"), ("to", "$lte")):
        if name in params:
            try:
                conditions.append(Condition("time", op, parse_time(params[name], name)))
            except Invalid as exc:
                raise Invalid(exc.message, code="invalid_parameter") from None
    return conditions


def _ids(params: Any) -> list[Condition]:
    if "ids" not in params:
        return []
    ids = [part for value in params.getall("ids") for part in value.split(",") if part]
    if not ids or len(ids) > MAX_IDS:
        raise Invalid(f"ids names 1 to {MAX_IDS} image ids", code="invalid_parameter")
    for ident in ids:
        if IMAGE_ID_RE.fullmatch(ident) is None:
            raise Invalid("ids are 24 hex digits, comma-separated or repeated", code="invalid_parameter")
    return [Condition(ID_FIELD, "$in", sorted({ident.lower() for ident in ids}))]


def _sha256(params: Any) -> list[Condition]:
    if "sha256" not in params:
        return []
    digest = params["sha256"].lower()
    if re.fullmatch(r"[0-9a-f]{64}", digest) is None:
        raise Invalid("sha256 is 64 hex digits", code="invalid_parameter")
    return [Condition(SHA256_FIELD, "$eq", digest)]


LIST_PARAMETERS = (*LIMIT_NAMES, *SKIP_NAMES, "sort", "order", "filter", "cursor", "from", "to", "ids", "sha256")
_REPEATABLE = ("ids",)


def list_query(params: Any, *, extra: tuple[str, ...] = (), default_limit: int = DEFAULT_LIMIT) -> ListQuery:
    """Parse seed 001's list parameters (with the original service's aliases): limit, skip, sort
    (and order), filter, cursor, from, to, ids, sha256 and property.KEY."""
    allowed = {*LIST_PARAMETERS, *extra}
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
        elif len(values) > 1 and name not in _REPEATABLE:
            raise Invalid(f"{name} is given more than once", code="invalid_parameter")
    limit_given = _one_of(params, LIMIT_NAMES)
    limit = _integer(limit_given[1], limit_given[0], 1, MAX_LIMIT) if limit_given else default_limit
    skip_given = _one_of(params, SKIP_NAMES)
    skip = _integer(skip_given[1], skip_given[0], 0, MAX_SKIP) if skip_given else 0
    if "order" in params and "sort" not in params:
        raise Invalid("order goes with sort=<field>", code="invalid_parameter")
    keys = parse_sort(params["sort"], params.get("order")) if "sort" in params else (SortKey("time", True),)
    # Time alone is the indexed order, with its own (shorter) cursor.
    time_only = len(keys) == 1 and keys[0].field == "time"
    descending = keys[0].descending if time_only else True
    sort = () if time_only else keys
    if "filter" in params:
        conditions.extend(parse_filter(params["filter"]))
    conditions += _time_window(params) + _ids(params) + _sha256(params)
    after = decode_cursor(params["cursor"], descending, sort) if "cursor" in params else None
    if after is not None and skip:
        raise Invalid("cursor and skip cannot be combined", code="invalid_parameter")
    return ListQuery(
        conditions=tuple(conditions), limit=limit, skip=skip, descending=descending,
        after=after if isinstance(after, Cursor) else None, sort=sort,
        after_key=after if isinstance(after, SortCursor) else None,
    )


def no_query(params: Any, allowed: tuple[str, ...] = ()) -> None:
    for name in params.keys():
        if name not in allowed:
            raise Invalid(f"unknown query parameter {name[:64]!r}", code="unknown_parameter")
