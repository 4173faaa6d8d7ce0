"""How long each step may take: the services' budgets it spends in turn, then the grace before Celery's limits,
and the broker's visibility timeout past all of them, so that a running task is never delivered twice."""

from __future__ import annotations

from spotdiff.jobs.deadlines import max_retry_delay_s, step_limits, visibility_timeout_s
from spotdiff.pipeline import STEPS
from spotdiff.protocol import Stage
from spotdiff.settings import Settings


def timed(**worker: float | None) -> Settings:
    return Settings(
        profile="tiny",
        generation={"request_timeout_s": 50},
        similarity={"request_timeout_s": 7},
        regions={"request_timeout_s": 20},
        captioning={"request_timeout_s": 100},
        worker={"step_margin_s": 3, "step_grace_s": 2, **worker},
    )


def test_a_steps_deadline_is_the_budgets_of_the_services_it_calls_plus_a_margin() -> None:
    settings = timed()
    limits = {step: step_limits(settings, step) for step in STEPS}
    assert limits[Stage.GENERATE].deadline_s == 50 + 3
    assert limits[Stage.PAIR_FILTER].deadline_s == limits[Stage.DIFFERENCE_AREAS].deadline_s == 7 + 3
    assert limits[Stage.PROPOSALS].deadline_s == 20 + 3
    assert limits[Stage.REGION_LABELS].deadline_s == 100 + 7 + 3  # the labels, then their scores
    assert limits[Stage.DIFFERENCE_CAPTION].deadline_s == 100 + 3
    for limit in limits.values():  # Celery's soft limit one grace later, its hard limit another grace later
        assert (limit.soft_limit_s, limit.hard_limit_s) == (limit.deadline_s + 2, limit.deadline_s + 4)


def test_the_visibility_timeout_outlasts_every_hard_limit_and_a_retry_delay() -> None:
    settings = timed()
    assert max_retry_delay_s(settings) == 2
    assert visibility_timeout_s(settings) == (100 + 7 + 3 + 4) + 2 + 2  # the labels step's hard limit, a delay, a grace
    assert visibility_timeout_s(timed(visibility_timeout_s=3600)) == 3600  # a setting wins
    defaults = Settings(profile="reference")
    longest = max(step_limits(defaults, step).hard_limit_s for step in STEPS)
    assert visibility_timeout_s(defaults) == 790 > longest + max_retry_delay_s(defaults)  # the README's 790 s
