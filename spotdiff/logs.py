"""Logging for every spotdiff process: one JSON object per line (or plain text), carrying the ids of the job,
pair, step or service the line was logged for.

The ids live in a context variable, not in each call: whatever runs inside ``log_context(...)``, however deep
and in whichever logger, is tagged with them, and asyncio copies the context into every task it creates, so a
task started inside the block carries them too. A Celery step task, for instance::

    from spotdiff.logs import log_context

    def run_step(job_id: str, pair_id: str, step: str) -> None:
        with log_context(job_id=job_id, pair_id=pair_id, step=step):
            log.info("step started")  # {"time": ..., "message": "step started", "job_id": ..., "pair_id": ...}
            ...

Blocks nest: an inner block adds or overrides fields and the outer ones come back when it ends. Where a block
does not fit (a value known halfway through a function), ``bind(**fields)`` adds fields to the current context
until ``unbind(*names)`` removes them; in a worker that reuses its thread for the next task, prefer the block.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

CONTEXT_FIELDS = ("job_id", "pair_id", "step", "service")
"""The fields the pipeline sets; any other keyword given to ``log_context`` is carried the same way."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("spotdiff_log_context", default=_EMPTY)

# Attributes every LogRecord has: a context field by one of these names would shadow the record's own.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_RECORD_KEY = "spotdiff_context"  # where ContextFilter leaves the fields for the formatters


def current_context() -> Mapping[str, Any]:
    """The fields set for the code running now (read-only)."""
    return _context.get()


@contextmanager
def log_context(**fields: Any) -> Iterator[Mapping[str, Any]]:
    """Tag every record logged inside the block with ``fields`` (on top of the enclosing block's fields)."""
    token = _context.set(MappingProxyType({**_context.get(), **fields}))
    try:
        yield _context.get()
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Add ``fields`` to the current context until ``unbind`` (or the end of the enclosing task or block)."""
    _context.set(MappingProxyType({**_context.get(), **fields}))


def unbind(*names: str) -> None:
    """Remove fields that ``bind`` (or an enclosing block) set, for the rest of the current context."""
    _context.set(MappingProxyType({key: value for key, value in _context.get().items() if key not in names}))


class ContextFilter(logging.Filter):
    """Copy the current context's fields onto each record, as it is logged (in the logging thread).

    A field the call passed itself (``extra={"pair_id": ...}``) wins over the context's.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        fields = {key: value for key, value in _context.get().items() if key not in _RECORD_ATTRIBUTES}
        for key in CONTEXT_FIELDS:
            if key in record.__dict__:
                fields[key] = record.__dict__[key]
        for key, value in fields.items():
            record.__dict__.setdefault(key, value)  # so that a %(job_id)s format finds it too
        record.__dict__[_RECORD_KEY] = MappingProxyType(fields)
        return True


def _context_of(record: logging.LogRecord) -> Mapping[str, Any]:
    context: Mapping[str, Any] = record.__dict__.get(_RECORD_KEY, _EMPTY)
    return context


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the context's fields, and the
    traceback as ``exc_info`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _context_of(record).items():
            line.setdefault(key, value)  # never over the four fields above
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The plain format for a terminal, with the context's fields appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = _context_of(record)
        if not context:
            return text
        first, newline, rest = text.partition("\n")  # after the message, before any traceback
        tags = " ".join(f"{key}={value}" for key, value in context.items())
        return f"{first} [{tags}]{newline}{rest}"


def configure_logging(level: str = "warning", json_format: bool = False, stream: TextIO | None = None) -> None:
    """Send every logger's records to one stream handler on the root logger (stderr by default), as JSON
    lines or plain text, tagged with the current ``log_context``; replaces the root's handlers, so calling it
    again reconfigures rather than doubles the output."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
