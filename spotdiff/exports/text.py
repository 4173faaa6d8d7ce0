"""How every export writes text: UTF-8 whatever the machine's locale (a container's is often plain ASCII), and
non-ASCII characters as themselves rather than ``\\u`` escapes, a line or a list entry at a time."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

ENCODING = "utf-8"


def text_file(target: Path) -> IO[str]:
    """``target`` opened for writing, in `ENCODING`."""
    return target.open("w", encoding=ENCODING)


def json_text(value: Any) -> str:
    """``value`` as JSON on one line."""
    return json.dumps(value, ensure_ascii=False)  # pragma: no mutate (ensure_ascii=None is as falsy as False)


def write_json_lines(target: Path, lines: Iterable[Any]) -> Path:
    """JSON Lines: one value per line, each line ended by a newline."""
    with text_file(target) as handle:
        for line in lines:
            handle.write(json_text(line) + "\n")
    return target


def write_json_list(target: Path, entries: Iterable[Any]) -> Path:
    """A JSON list written an entry at a time (an export of any size never sits in memory)."""
    with text_file(target) as handle:
        handle.write("[")
        for count, entry in enumerate(entries):
            handle.write(("," if count else "") + "\n" + json_text(entry))
        handle.write("\n]\n")
    return target
