"""One dict round trip for the frozen config dataclasses that model files and JSON files carry."""
from __future__ import annotations

from dataclasses import asdict, fields, replace


class FieldsDict:
    """Mixin for a frozen dataclass: a copy with changes, and a plain dict of its fields and back
    (unknown keys refused by name). ``_kind`` names the dataclass in that message."""

    _kind = "model"

    def with_(self, **changes):
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON-/torch-safe dict of the fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown {cls._kind} fields: {sorted(unknown)}")
        return cls(**d)
