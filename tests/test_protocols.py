"""The Protocol check itself refuses what does not implement a Protocol."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pytest

from tests.protocols import assert_implements, protocol_methods


@runtime_checkable
class Shelf(Protocol):
    name: str

    @classmethod
    def build(cls, size: int) -> Shelf: ...

    async def put(self, key: str, *, label: str = "") -> None: ...

    def keys(self) -> list[str]: ...


class Good:
    name = "good"

    @classmethod
    def build(cls, size: int) -> Shelf:
        return cls()

    async def put(self, key: str, *, label: str = "") -> None:
        return None

    def keys(self) -> list[str]:
        return []


class Missing(Good):
    keys = None  # type: ignore[assignment]


class OtherParameters(Good):
    async def put(self, key: str, label: str = "") -> None:  # type: ignore[override]
        return None


class NotAsync(Good):
    def put(self, key: str, *, label: str = "") -> None:  # type: ignore[override]
        return None


class NotClassmethod(Good):
    def build(self, size: int) -> Shelf:  # type: ignore[override]
        return self


def test_methods_of_the_protocol_are_found() -> None:
    assert protocol_methods(Shelf) == ["build", "keys", "put"]


def test_an_implementation_passes() -> None:
    assert_implements(Good(), Shelf)


@pytest.mark.parametrize("wrong", [Missing, OtherParameters, NotAsync, NotClassmethod])
def test_every_kind_of_mismatch_is_refused(wrong: type) -> None:
    with pytest.raises(AssertionError):
        assert_implements(wrong(), Shelf)
