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
class ListQuery:
    conditions: tuple[Condition, ...] = ()
    limit: int = DEFAULT_LIMIT
    skip: int = 0
    descending: bool = True
    after: Cursor | None = None
    # Only this user's records (`auth.scope: user`); None for everyone's. The record's owner,
    # never a property named "owner".
    owner: str | None = None
