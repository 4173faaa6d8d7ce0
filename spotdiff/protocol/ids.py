"""One grammar for every identifier a client chooses: job ids and pair ids.

An id becomes a folder or file name in the artifact store, so it must never be able to name a path: letters,
digits, ``_`` and ``-``, with single dots only between them (no ``.`` or ``..``, no leading or trailing dot),
at most 128 characters. The same pattern is in the OpenAPI schema, and a wrong id gets a 422 that names it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

MAX_ID_CHARS = 128
VARIATION_MARK = "--v"  # a job with a target names the variations of pair <id> <id>--v<k>
MAX_SUBMITTED_ID_CHARS = 100  # room for the mark and a number
ID_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
ID_RULE = (
    f"letters, digits, '_' and '-', with single dots between them (not first or last), at most {MAX_ID_CHARS} "
    "characters"
)
_ID = re.compile(ID_PATTERN)


def is_valid_id(value: object) -> bool:
    """True for a string the grammar allows."""
    return isinstance(value, str) and len(value) <= MAX_ID_CHARS and _ID.fullmatch(value) is not None


def check_id(value: object, what: str) -> str:
    """``value`` when it is a valid id; else a ValueError that says which id and what an id may hold."""
    if not is_valid_id(value):
        shown = value if not isinstance(value, str) or len(value) <= 2 * MAX_ID_CHARS else value[:MAX_ID_CHARS] + "…"
        raise ValueError(f"{what} {shown!r} is not allowed: an id is {ID_RULE}")
    assert isinstance(value, str)
    return value


_ID_SCHEMA = WithJsonSchema(
    {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": ID_PATTERN, "description": ID_RULE}
)

# Checked on the raw input, before any whitespace stripping, so that the schema and the check agree.
PairId = Annotated[str, BeforeValidator(lambda value: check_id(value, "pair id")), _ID_SCHEMA]
JobId = Annotated[str, BeforeValidator(lambda value: check_id(value, "job id")), _ID_SCHEMA]


def check_submitted_pair_id(value: object) -> str:
    """A pair id a client submits in a job: an id, with room left for its variations' names."""
    pair_id = check_id(value, "pair id")
    if len(pair_id) > MAX_SUBMITTED_ID_CHARS or VARIATION_MARK in pair_id:
        raise ValueError(
            f"pair id {pair_id!r} is not allowed in a job: at most {MAX_SUBMITTED_ID_CHARS} characters, and no "
            f"{VARIATION_MARK!r} (a job with a target names its variations <id>{VARIATION_MARK}<k>)"
        )
    return pair_id


SubmittedPairId = Annotated[
    str,
    BeforeValidator(check_submitted_pair_id),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_SUBMITTED_ID_CHARS,
            "pattern": ID_PATTERN,
            "not": {"pattern": VARIATION_MARK},
            "description": f"{ID_RULE.replace(str(MAX_ID_CHARS), str(MAX_SUBMITTED_ID_CHARS))}, without "
            f"{VARIATION_MARK!r}",
        }
    ),
]
