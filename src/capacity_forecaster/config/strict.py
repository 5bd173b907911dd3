"""Strict numbers in the configuration: true/false never passes as a count or a share."""

from __future__ import annotations

import types
import typing
from typing import Any


def _options(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a union (``int | None`` -> int, NoneType), else the annotation alone."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def bool_as_number(value: Any, annotation: Any) -> bool:
    """Whether ``value`` is (or holds) a bool where ``annotation`` expects a number, not a bool.

    pydantic's lax mode reads ``True`` as 1 for ``int`` and ``float`` fields, so YAML's
    ``servers: true`` or ``CAPFC_GENERATE__SERVERS=yes`` would silently mean one server.
    Items of tuples, lists and dict values are checked against their item types.
    """
    options = _options(annotation)
    if isinstance(value, bool):
        return bool not in options and any(o in (int, float) for o in options)
    for option in options:
        args = typing.get_args(option)
        origin = typing.get_origin(option)
        if origin in (tuple, list) and isinstance(value, (list, tuple)) and args:
            return any(bool_as_number(item, args[0]) for item in value)
        if origin is dict and isinstance(value, dict) and len(args) == 2:
            return any(bool_as_number(item, args[1]) for item in value.values())
    return False
