"""A decision carries its reason and the numbers behind it, so every rejection can be explained."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Decision:
    keep: bool
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.keep
