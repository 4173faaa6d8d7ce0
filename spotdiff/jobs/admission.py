"""Admission per API key: how many jobs one key may have in flight, and how many pairs it may submit per minute.

Both are kept in Redis, so every gateway replica enforces the same limits, and decided by one Lua script, so
two concurrent submissions cannot both take the last slot. Pairs per minute is a token bucket refilled at the
per-minute rate; it holds at least one job of the gateway's largest size, so any job a key may submit gets
in once its bucket is full. A refusal says how long to wait.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

ACTIVE_JOBS = "spotdiff:jobs:active"  # every queued or running job, for the reconciler's sweep
JOBS_RETRY_AFTER_S = 10.0  # a job in flight ends at its own pace: a hint, not a promise

# KEYS: the owner's active jobs, the owner's bucket, every active job.
# ARGV: job id, max jobs, refill per second, capacity, cost.  Returns {1, "", "0"} or {0, reason, retry after}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local job, max_jobs = ARGV[1], tonumber(ARGV[2])
local rate, capacity, cost = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('SISMEMBER', KEYS[1], job) == 0 and redis.call('SCARD', KEYS[1]) >= max_jobs then
  return {0, 'jobs_in_flight', ARGV[6]}
end
local tokens = tonumber(redis.call('HGET', KEYS[2], 'tokens') or capacity)
local since = tonumber(redis.call('HGET', KEYS[2], 'at') or now)
tokens = math.min(capacity, tokens + math.max(0, now - since) * rate)
if cost > tokens then
  return {0, 'pairs_per_minute', tostring((cost - tokens) / rate)}
end
redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - cost), 'at', tostring(now))
redis.call('EXPIRE', KEYS[2], math.ceil(capacity / rate) + 60)
redis.call('SADD', KEYS[1], job)
redis.call('SADD', KEYS[3], job)
return {1, '', '0'}
"""


def owner_jobs_key(owner: str) -> str:
    return f"spotdiff:owner:{owner}:active"


def owner_bucket_key(owner: str) -> str:
    return f"spotdiff:owner:{owner}:pairs"


@dataclass(frozen=True)
class Admission:
    admitted: bool
    reason: str = ""
    retry_after_s: float = 0.0


class Admissions:
    def __init__(self, client: Any) -> None:
        self.redis = client
        self._admit = client.register_script(_ADMIT)

    def admit(
        self, owner: str, job_id: str, *, cost: int, max_jobs: int, pairs_per_minute: int, capacity: int
    ) -> Admission:
        """Count ``job_id`` as in flight for ``owner`` and take ``cost`` pairs from its bucket, or say why not."""
        keys = [owner_jobs_key(owner), owner_bucket_key(owner), ACTIVE_JOBS]
        rate = pairs_per_minute / 60.0
        args = [job_id, max_jobs, rate, max(capacity, pairs_per_minute, cost), cost, JOBS_RETRY_AFTER_S]
        admitted, reason, wait = self._admit(keys=keys, args=args)
        return Admission(bool(int(admitted)), str(reason), max(1.0, math.ceil(float(wait))) if not admitted else 0.0)

    def track(self, owner: str, job_id: str) -> None:
        """A job in flight again (its progress was rebuilt from the store)."""
        pipe = self.redis.pipeline()
        pipe.sadd(owner_jobs_key(owner), job_id)
        pipe.sadd(ACTIVE_JOBS, job_id)
        pipe.execute()

    def release(self, owner: str | None, job_id: str) -> None:
        """The job ended (done or cancelled): it no longer counts against its key."""
        pipe = self.redis.pipeline()
        if owner is not None:
            pipe.srem(owner_jobs_key(owner), job_id)
        pipe.srem(ACTIVE_JOBS, job_id)
        pipe.execute()

    def active(self) -> list[str]:
        return sorted(self.redis.smembers(ACTIVE_JOBS))
