"""Structured logs: JSON lines carrying the job, pair, step and service of the context they were logged in."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spotdiff.logs import bind, configure_logging, current_context, log_context, unbind
from spotdiff.settings import Settings

log = logging.getLogger("spotdiff.test_logs")

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_lines() -> Iterator[Lines]:
    """Configure JSON logging into a buffer; hand back a reader of the lines so far; restore the root logger."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure_logging("debug", json_format=True, stream=buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def ids(line: dict[str, Any]) -> dict[str, Any]:
    return {key: line[key] for key in ("job_id", "pair_id", "step", "service") if key in line}


def test_lines_are_json_with_the_base_fields(json_lines: Lines) -> None:
    log.warning("hello %s", "world")
    (line,) = json_lines()
    assert line["message"] == "hello world"
    assert line["level"] == "WARNING"
    assert line["logger"] == "spotdiff.test_logs"
    assert line["time"].endswith("+00:00")
    assert ids(line) == {}


def test_fields_appear_inside_the_context_only(json_lines: Lines) -> None:
    log.info("before")
    with log_context(job_id="job-1", pair_id="dog-cat", step="generate"):
        log.info("inside")
        logging.getLogger("elsewhere.deep").error("other logger")
    log.info("after")
    before, inside, other, after = json_lines()
    assert ids(before) == {} and ids(after) == {}
    assert ids(inside) == {"job_id": "job-1", "pair_id": "dog-cat", "step": "generate"}
    assert ids(other) == ids(inside)


def test_nesting_restores_the_outer_fields(json_lines: Lines) -> None:
    with log_context(job_id="job-1", step="generate"):
        with log_context(pair_id="p1", step="pair_filter"):
            log.info("inner")
        log.info("outer again")
        with pytest.raises(RuntimeError), log_context(pair_id="p2"):
            raise RuntimeError("a failing step")
        log.info("after a failure")
    inner, outer, after_failure = json_lines()
    assert ids(inner) == {"job_id": "job-1", "step": "pair_filter", "pair_id": "p1"}
    assert ids(outer) == {"job_id": "job-1", "step": "generate"}
    assert ids(after_failure) == ids(outer)
    assert current_context() == {}


def test_a_field_given_to_the_call_wins(json_lines: Lines) -> None:
    with log_context(job_id="job-1", pair_id="p1"):
        log.info("explicit", extra={"pair_id": "p9"})
    (line,) = json_lines()
    assert ids(line) == {"job_id": "job-1", "pair_id": "p9"}


def test_exceptions_keep_their_traceback(json_lines: Lines) -> None:
    with log_context(pair_id="p1"):
        try:
            raise ValueError("bad box")
        except ValueError:
            log.exception("step failed")
    (line,) = json_lines()
    assert line["pair_id"] == "p1" and "ValueError: bad box" in line["exc_info"]


def test_bind_and_unbind(json_lines: Lines) -> None:
    with log_context(job_id="job-1"):
        bind(pair_id="p1", service="similarity")
        log.info("bound")
        unbind("pair_id")
        log.info("unbound")
    log.info("outside")
    bound, unbound, outside = json_lines()
    assert ids(bound) == {"job_id": "job-1", "pair_id": "p1", "service": "similarity"}
    assert ids(unbound) == {"job_id": "job-1", "service": "similarity"}
    assert ids(outside) == {}


async def test_fields_follow_asyncio_tasks(json_lines: Lines) -> None:
    async def pair(pair_id: str) -> None:
        with log_context(pair_id=pair_id):
            for step in ("generate", "pair_filter"):
                with log_context(step=step):
                    await asyncio.sleep(0)  # the tasks interleave
                    log.info("step")

    async def binds() -> None:
        bind(pair_id="bound-in-a-task")
        log.info("bound")

    with log_context(job_id="job-1"):
        await asyncio.gather(pair("a"), pair("b"), asyncio.create_task(binds()))
        log.info("job done")
    lines = json_lines()
    steps = [ids(line) for line in lines if line["message"] == "step"]
    assert sorted((line["pair_id"], line["step"]) for line in steps) == [
        ("a", "generate"),
        ("a", "pair_filter"),
        ("b", "generate"),
        ("b", "pair_filter"),
    ]
    assert all(line["job_id"] == "job-1" for line in steps)
    (bound,) = [line for line in lines if line["message"] == "bound"]
    assert ids(bound) == {"job_id": "job-1", "pair_id": "bound-in-a-task"}
    (done,) = [line for line in lines if line["message"] == "job done"]
    assert ids(done) == {"job_id": "job-1"}  # nothing a task set leaked back


def test_plain_text_appends_the_fields() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    try:
        configure_logging("info", json_format=False, stream=buffer)
        configure_logging("info", json_format=False, stream=buffer)  # reconfiguring does not double the lines
        with log_context(job_id="job-1", pair_id="p1"):
            log.info("hello")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    (line,) = buffer.getvalue().splitlines()
    assert line.endswith("INFO spotdiff.test_logs: hello [job_id=job-1 pair_id=p1]")


def test_settings_switch_json_logs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPOTDIFF_LOG_JSON", raising=False)
    assert Settings().log_json is False
    monkeypatch.setenv("SPOTDIFF_LOG_JSON", "true")
    assert Settings().log_json is True
    monkeypatch.setenv("SPOTDIFF_LOG_JSON", "0")
    assert Settings().log_json is False
