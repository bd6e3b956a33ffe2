"""The query model the metadata backends answer: conditions already validated, a keyset cursor."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

# The original service's page size (seed 001 clients rely on getting up to 500 without asking).
DEFAULT_LIMIT = 500


@dataclass(frozen=True)
class Condition:
    """One comparison of a field. `field` is "time", a property key or one of the `$` fields
    below; `value` is already validated (a datetime for time, a JSON scalar for properties, a
    list for $in/$nin)."""

    field: str
    op: str
    value: Any


# Conditions on the image id ($eq, $ne, $in, $nin; values are checked ids) and on the content
# hash ($eq, $in; lower-case hex). Kept as conditions, unlike the owner: they combine with the
# filter's own `_id` conditions and sort keys, and no property key can start with `$`.
ID_FIELD = "$id"
SHA256_FIELD = "$sha256"


def owned_by(query: ListQuery, owner: str | None) -> ListQuery:
    """The query limited to one owner's records; unchanged for None."""
    if owner is None:
        return query
    return replace(query, owner=owner)


@dataclass(frozen=True)
class Cursor:
    time: datetime
    id: str


@dataclass(frozen=True)
class SortKey:
    """One key of an order: "time", ID_FIELD or a top-level property key."""

    field: str
    descending: bool = False


@dataclass(frozen=True)
class SortCursor:
    """Where a page ended under `ListQuery.sort`: one value per sort key (a datetime for time, the
    id for ID_FIELD, a `sort_position` pair for a property) and the last record's id."""

    values: tuple[Any, ...]
    id: str


@dataclass(frozen=True)
class ListQuery:
    conditions: tuple[Condition, ...] = ()
    limit: int = DEFAULT_LIMIT
    skip: int = 0
    descending: bool = True
    after: Cursor | None = None
    # Only this user's records (`auth.scope: user`); None for everyone's. The record's owner,
    # never a property named "owner".
    owner: str | None = None
    # Empty: by time as `descending` says (the indexed order). Otherwise these keys, then the id
    # in the direction of the last key; pages continue after `after_key`.
    sort: tuple[SortKey, ...] = ()
    after_key: SortCursor | None = None


def order(query: ListQuery) -> tuple[SortKey, ...]:
    """The query's sort keys, time included when it sorts by time alone."""
    return query.sort or (SortKey("time", query.descending),)


def keyset(query: ListQuery) -> SortCursor | None:
    """The query's cursor in the form `order` describes."""
    if query.after_key is not None:
        return query.after_key
    if query.after is not None:
        return SortCursor((query.after.time,), query.after.id)
    return None


# The order of property values when sorting, the same on every backend. MongoDB's BSON order,
# restricted to JSON: a missing property or null < numbers < strings < objects < arrays <
# booleans. Within a bracket numbers compare by value, strings by code point, false < true;
# objects and arrays are not compared with each other (ties, broken by id), so no backend has to
# reproduce MongoDB's element-wise array rules.
NUMBER, STRING, OBJECT, ARRAY, BOOLEAN = 1, 2, 3, 4, 5


def sort_position(present: bool, value: Any) -> tuple[int | None, Any]:
    """(bracket, value within the bracket) of a property value; (None, None) when it is missing
    or null, and (bracket, None) for objects and arrays."""
    if not present or value is None:
        return (None, None)
    if isinstance(value, bool):
        return (BOOLEAN, value)
    if isinstance(value, (int, float)):
        return (NUMBER, value)
    if isinstance(value, str):
        return (STRING, value)
    if isinstance(value, dict):
        return (OBJECT, None)
    return (ARRAY, None)
