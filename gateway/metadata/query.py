"""The query model the metadata backends answer: conditions already validated, a keyset cursor."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class Condition:
    """One comparison of a field. `field` is "time" or a property key; `value` is already
    validated (a datetime for time, a JSON scalar for properties, a list for $in/$nin)."""

    field: str
    op: str
    value: Any


# The field of the condition on the record's owner; no property key can start with `$`.
OWNER_FIELD = "$owner"


def owned_by(query: ListQuery, owner: str | None) -> ListQuery:
    """The query limited to one owner's records; unchanged for None."""
    if owner is None:
        return query
    return replace(query, conditions=(*query.conditions, Condition(OWNER_FIELD, "$eq", owner)))


@dataclass(frozen=True)
class Cursor:
    time: datetime
    id: str


@dataclass(frozen=True)
class ListQuery:
    conditions: tuple[Condition, ...] = ()
    limit: int = DEFAULT_LIMIT
    skip: int = 0
    descending: bool = True
    after: Cursor | None = None
