"""A job's events (created, each pair, each round, done or cancelled) as a Redis stream: what the gateway's
event stream relays, from any point a client last saw."""

from __future__ import annotations

import json
from typing import Any

EVENTS_MAXLEN = 10_000  # the stream keeps about the last this many events of a job
FINAL_EVENTS = ("done", "cancelled")


class EventLog:
    def __init__(self, client: Any) -> None:
        self.redis = client

    def add(self, stream: str, fields: dict[str, Any]) -> None:
        """One event: its type, and its fields as JSON (numbers stay numbers; a stream's values are strings)."""
        values = {"type": str(fields.get("type", "event")), "data": json.dumps(fields)}
        self.redis.xadd(stream, values, maxlen=EVENTS_MAXLEN, approximate=True)

    def read(self, stream: str, after: str = "0", block_ms: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        """The events after id ``after``, waiting up to ``block_ms`` for the first."""
        answer = self.redis.xread({stream: after}, block=block_ms, count=100)
        return [(event_id, _decoded(fields)) for _, entries in answer for event_id, fields in entries]


def _decoded(values: dict[str, str]) -> dict[str, Any]:
    if "data" in values:
        fields: dict[str, Any] = json.loads(values["data"])
        return fields
    return dict(values)  # an event written before events carried JSON: every value a string
