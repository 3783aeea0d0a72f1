"""Config dataclasses ↔ plain dicts (JSON, checkpoints), shared by every config in dphm."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _tuples(value: Any) -> Any:
    """JSON turns tuples into lists; configs use tuples (hashable, immutable)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


class DictConfig:
    """Mixin for config dataclasses: ``to_dict`` for JSON/checkpoints, ``from_dict`` to rebuild."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any]) -> T:
        return dataclass_from_dict(cls, d)


def dataclass_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (nested) config dataclass from :func:`dataclasses.asdict` output.

    Unknown keys are ignored (older/newer files stay loadable); missing keys keep their defaults;
    nested dataclass fields are rebuilt recursively from their type hints; lists become tuples.
    """
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, ftype = data[f.name], hints.get(f.name)
        if dataclasses.is_dataclass(ftype) and isinstance(value, dict):
            value = dataclass_from_dict(ftype, value)
        kwargs[f.name] = _tuples(value)
    return cls(**kwargs)
