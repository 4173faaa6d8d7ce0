"""How long each step of a pair may take, and so when a stalled step is tried again.

A step's deadline is the sum of the time budgets of the services it calls in turn
(``SPOTDIFF_<SERVICE>__REQUEST_TIMEOUT_S``) plus a margin for the store and the CPU work around the calls. The
task gives up on its step at the deadline (a retry), Celery's soft time limit comes one grace later and its hard
limit (which kills the process) a grace after that. While the step runs, its task renews the pair's lease
(`spotdiff.jobs.progress`); a task that died, or was killed at the hard limit, stops renewing, and within
``worker.lease_s`` the reconciler enqueues the step again. Redis hands an unacknowledged task to another worker
(the visibility timeout) only after the longest hard limit and the longest retry delay, so a task that is still
running is never delivered twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from spotdiff.pipeline import STEP_SERVICES, STEPS
from spotdiff.protocol import Stage
from spotdiff.settings import Settings


@dataclass(frozen=True)
class StepLimits:
    deadline_s: float
    soft_limit_s: float
    hard_limit_s: float


def step_limits(settings: Settings, step: Stage) -> StepLimits:
    worker = settings.worker
    budget = sum(settings.service(name).request_timeout_s for name in STEP_SERVICES[step])
    deadline = budget + worker.step_margin_s
    return StepLimits(deadline, deadline + worker.step_grace_s, deadline + 2 * worker.step_grace_s)


def max_retry_delay_s(settings: Settings) -> float:
    """Retry delays double from ``retry_backoff_s`` and stop at one grace: a retried task waits in a worker,
    unacknowledged, for that long at most."""
    return settings.worker.step_grace_s


def visibility_timeout_s(settings: Settings) -> float:
    """The broker's visibility timeout: the setting, or just above the longest hard limit plus a retry delay."""
    if settings.worker.visibility_timeout_s is not None:
        return settings.worker.visibility_timeout_s
    longest = max(step_limits(settings, step).hard_limit_s for step in STEPS)
    return longest + max_retry_delay_s(settings) + settings.worker.step_grace_s
