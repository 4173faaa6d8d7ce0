"""Jobs that ask for N accepted samples: how many more pairs to run, and which.

A job with ``target_accepted`` runs in rounds. Each round is sized from the yield observed so far (accepted
over finished), with some headroom, and bounded by the job's budgets; its pairs are variations of the
submitted caption pairs (the same captions with new seeds), taken in turn, so that a job of three pairs
asking for 500 samples spreads them over all three. Accepted pairs past the N-th are surplus, kept on
record but not exported as samples.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from spotdiff.imgdiff.decision import Decision
from spotdiff.protocol.ids import VARIATION_MARK
from spotdiff.protocol.records import CaptionPair

HEADROOM = 1.2  # a round asks for 20 % more than the observed yield says, so most jobs end in two rounds
FIRST_ROUND_YIELD = 1.0  # nothing observed yet: assume every pair is accepted, so a first round never overshoots
MIN_YIELD = 0.02  # a round for a job that accepted almost nothing is still bounded by the budgets


def next_round(
    *,
    target: int,
    accepted: int,
    finished: int,
    planned: int,
    budget_pairs: int,
    spent_seconds: float,
    budget_seconds: float | None,
) -> Decision:
    """Whether to run another round and how many pairs (``numbers["size"]``); the reason says why not."""
    numbers = {
        "target": target,
        "accepted": accepted,
        "finished": finished,
        "planned": planned,
        "budget_pairs": budget_pairs,
        "spent_seconds": round(spent_seconds, 3),
        "budget_seconds": budget_seconds,
    }
    if accepted >= target:
        return Decision(False, "target_reached", numbers)
    if planned >= budget_pairs:
        return Decision(False, "budget_pairs", numbers)
    if budget_seconds is not None and spent_seconds >= budget_seconds:
        return Decision(False, "budget_seconds", numbers)
    observed = accepted / finished if finished else FIRST_ROUND_YIELD
    expected_yield = max(observed, MIN_YIELD)
    wanted = math.ceil((target - accepted) / expected_yield * (HEADROOM if finished else 1.0))
    size = min(wanted, budget_pairs - planned)  # both at least 1 here: accepted < target, planned < budget
    return Decision(True, "more_needed", {**numbers, "yield": round(observed, 4), "size": size})


def variation_seed(job_id: str, index: int) -> int:
    """A seed for the ``index``-th pair of a job, reproducible from the job id alone."""
    digest = hashlib.sha256(f"{job_id}:{index}".encode()).digest()
    top = int.from_bytes(digest[:8], "big")  # pragma: no mutate (equivalent: "big" is the default byte order)
    return top >> 11  # 53 bits: at most MAX_SEED, as CaptionPair requires


def variation_id(pair_id: str, variation: int) -> str:
    return f"{pair_id}{VARIATION_MARK}{variation}"


def round_pairs(job_id: str, given: Sequence[CaptionPair], start: int, size: int) -> list[CaptionPair]:
    """Pairs ``start .. start + size - 1`` of the job's endless sequence: the given pairs first, as submitted,
    then each again with a new seed (``<id>--v<k>``), in turn."""
    pairs = []
    for index in range(start, start + size):
        original = given[index % len(given)]
        variation = index // len(given)
        if variation == 0:
            pairs.append(original)
        else:
            pairs.append(
                original.model_copy(
                    update={"id": variation_id(original.id, variation), "seed": variation_seed(job_id, index)}
                )
            )
    return pairs
