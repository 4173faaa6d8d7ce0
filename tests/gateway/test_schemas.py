"""Property-based tests of every OpenAPI schema (schemathesis): the four services as real processes, and a
gateway process in front of them. Any request the schema allows, and many it does not, must get an answer
the schema documents: never a 5xx, never an undocumented status, content type or body."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.deps import hash_key

from .conftest import KEYS, gateway_process

# Every check but "valid data is accepted": the services' limits (steps, pixels, tokens) are settings, so a
# request the schema allows may still get a documented 422.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
GATEWAY_REDIS = "redis://127.0.0.1:6379/12"  # no worker listens here: fuzzed jobs are accepted, never run


def fuzz(
    url: str,
    examples: int,
    headers: dict[str, str] | None = None,
    checks: list = CHECKS,
    only: tuple[str, ...] = (),
    body_filter=None,
) -> list[str]:
    """Run every operation of ``url``'s schema (or those whose label starts with one of ``only``) ``examples``
    times (or SPOTDIFF_FUZZ_EXAMPLES, for a deeper run by hand); the operations tested."""
    examples = int(os.environ.get("SPOTDIFF_FUZZ_EXAMPLES", examples))
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    if body_filter is not None:
        schema.hook("filter_body")(body_filter)
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if only and not operation.label.startswith(only):
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=url, headers=headers, checks=checks)

        check()
        tested.append(operation.label)
    return tested


@pytest.mark.parametrize("service", ["generation", "similarity", "regions", "captioning"])
def test_each_service_answers_everything_as_its_schema_says(stack: dict, service: str) -> None:
    tested = fuzz(stack["urls"][service], examples=40)
    assert {"GET /healthz", "GET /readyz", "GET /metrics", "GET /v1/info"} <= set(tested)
    assert any(label.startswith("POST /v1/") for label in tested)


@pytest.fixture(scope="module")
def gateway_url(stack: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        **stack["env"],
        "SPOTDIFF_REDIS_URL": GATEWAY_REDIS,
        "SPOTDIFF_STORAGE_URL": str(tmp_path_factory.mktemp("fuzzed-jobs")),
        "SPOTDIFF_GATEWAY__API_KEYS": f'["{hash_key(KEYS["alice"])}"]',
    }
    try:
        with gateway_process(env) as url:
            yield url
    finally:
        redis.Redis.from_url(GATEWAY_REDIS).flushdb()


def test_the_gateway_answers_everything_as_its_schema_says(gateway_url: str) -> None:
    tested = fuzz(gateway_url, examples=30, headers={"Authorization": f"Bearer {KEYS['alice']}"})
    assert {
        "POST /v1/jobs",
        "GET /v1/jobs/{job_id}",
        "POST /v1/generation/pairs",
        "POST /v1/captioning/captions",
    } <= set(tested)
    assert os.environ.get("SPOTDIFF_REDIS_URL") != GATEWAY_REDIS


def within_the_cross_field_rules(_context: object, body: object) -> bool:
    """What JSON Schema cannot say about a job, and the schema's descriptions do: pair ids unique within the
    job, a target caption that differs from its source, budgets only with a target, new rewrites only of captions,
    pairs or captions (not both, not neither). Bodies of captions are left to their own tests: whether a caption gives a pair depends on its
    words (a noun the rewriter knows), which no schema can say."""
    if not isinstance(body, dict):
        return True
    if "captions" in body or not isinstance(body.get("pairs"), list) or not body["pairs"]:
        return False
    if body.get("variation") == "rewrite":
        return False
    pairs = [pair for pair in body["pairs"] if isinstance(pair, dict)]
    ids = [pair.get("id") for pair in pairs]
    if len(set(map(str, ids))) != len(ids):
        return False
    for pair in pairs:
        source, target = pair.get("source"), pair.get("target")
        if (
            isinstance(source, str)
            and isinstance(target, str)
            and source.strip(" \t\n\r\f\v").casefold() == target.strip(" \t\n\r\f\v").casefold()
        ):
            return False
    return body.get("target_accepted") is not None or (
        body.get("budget_pairs") is None and body.get("budget_seconds") is None
    )


def test_the_job_routes_accept_everything_their_schema_allows(gateway_url: str) -> None:
    """Schema and validation say the same thing: every body the schema allows is accepted (or refused only
    for a documented reason that is not the body's: a key's limits, an id taken by another body)."""
    tested = fuzz(
        gateway_url,
        examples=60,
        headers={"Authorization": f"Bearer {KEYS['alice']}"},
        checks=[*CHECKS, positive_data_acceptance],
        only=("POST /v1/jobs", "PUT /v1/jobs/{job_id}"),
        body_filter=within_the_cross_field_rules,
    )
    assert tested == ["POST /v1/jobs", "PUT /v1/jobs/{job_id}"]
