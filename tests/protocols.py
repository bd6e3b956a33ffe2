"""Warehouse's `verifyClass`, for our Protocols: an object implements a Protocol when it has
every member (`isinstance` of the runtime-checkable Protocol) and each method takes the same
parameters, is a classmethod where the Protocol's is, and is a coroutine function where the
Protocol's is."""

from __future__ import annotations

import inspect
from typing import Any


def protocol_methods(protocol: type) -> list[str]:
    """The methods the Protocol itself declares (not those of `Protocol` or `object`)."""
    return sorted(
        name for name, value in vars(protocol).items()
        if (callable(value) or isinstance(value, classmethod)) and (not name.startswith("_") or name in ("__aiter__", "__anext__"))
    )


def _parameters(function: Any) -> list[tuple[str, Any, Any, Any]]:
    return [(p.name, p.kind, p.default, p.annotation) for p in inspect.signature(function).parameters.values()]


def assert_implements(instance: Any, protocol: type) -> None:
    assert isinstance(instance, protocol), f"{type(instance).__name__} lacks members of {protocol.__name__}"
    cls = type(instance)
    for name in protocol_methods(protocol):
        wanted, got = getattr(protocol, name), getattr(cls, name)
        where = f"{cls.__name__}.{name}"
        is_classmethod = isinstance(inspect.getattr_static(protocol, name), classmethod)
        assert isinstance(inspect.getattr_static(cls, name), classmethod) == is_classmethod, f"{where}: classmethod or not as in {protocol.__name__}"
        assert _parameters(got) == _parameters(wanted), f"{where}{inspect.signature(got)} != {protocol.__name__}{inspect.signature(wanted)}"
        assert inspect.iscoroutinefunction(got) == inspect.iscoroutinefunction(wanted), f"{where}: async or not as in {protocol.__name__}"
