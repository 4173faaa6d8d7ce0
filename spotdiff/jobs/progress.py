"""Where each unfinished pair of a job is, in Redis: the step it waits for or runs, and the lease of a running step.

- ``stages`` (hash pair -> rank of its step in `STEPS`) with ``stage_counts`` (rank -> pairs) beside it, kept
  together by Lua scripts, so a job's status costs the same at 10 pairs and at 10,000. A pair only ever moves
  forward (a late duplicate of an earlier step cannot pull it back) and never after its record was counted.
- ``leases`` (sorted set pair -> expiry, Redis time) with ``lease_steps`` (pair -> step): a task that runs a
  step's model work holds its pair and renews the lease while it runs (a heartbeat), so a second delivery of
  the same step does not run it again meanwhile; a lease that is not renewed expires within
  ``worker.lease_s``: its task died (or was killed at its hard time limit), and the reconciler takes it over
  (`take_expired`) and enqueues the step again, at most ``max_lease_expiries`` times.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from spotdiff.pipeline import STEPS
from spotdiff.protocol import Stage

RANK = {step: rank for rank, step in enumerate(STEPS)}

# KEYS: stages, stage_counts, counted. ARGV: rank, force ("1": move even backwards), pair ids...
_MOVE = """
local rank = tonumber(ARGV[1])
local force = ARGV[2] == '1'
local moved = 0
for i = 3, #ARGV do
  local pair = ARGV[i]
  if redis.call('SISMEMBER', KEYS[3], pair) == 0 then
    local current = redis.call('HGET', KEYS[1], pair)
    if force or not current or tonumber(current) < rank then
      if current then redis.call('HINCRBY', KEYS[2], current, -1) end
      redis.call('HSET', KEYS[1], pair, rank)
      redis.call('HINCRBY', KEYS[2], rank, 1)
      moved = moved + 1
    end
  end
end
return moved
"""

# KEYS: stages, stage_counts, leases, lease_steps. ARGV: pair. The pair has finished: it is nowhere any more.
_REMOVE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  redis.call('HINCRBY', KEYS[2], current, -1)
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return current and 1 or 0
"""

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000"

# KEYS: leases, lease_steps. ARGV: pair, step, seconds. 1 when taken, 0 when a live lease holds the pair.
_ACQUIRE = (
    _NOW
    + """
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if held and tonumber(held) > now then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""
)

# KEYS: leases. ARGV: pair, seconds. Extends a lease that is still there (1), else 0 (taken over meanwhile).
_RENEW = (
    _NOW
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

# KEYS: leases, lease_steps, expiries, counted. ARGV: at most this many.
# Returns pair, step, times expired, ... for each lease past its expiry (now removed) of an unfinished pair.
_TAKE_EXPIRED = (
    _NOW
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local taken = {}
for _, pair in ipairs(expired) do
  local step = redis.call('HGET', KEYS[2], pair)
  redis.call('ZREM', KEYS[1], pair)
  redis.call('HDEL', KEYS[2], pair)
  if step and redis.call('SISMEMBER', KEYS[4], pair) == 0 then
    local times = redis.call('HINCRBY', KEYS[3], pair, 1)
    table.insert(taken, pair)
    table.insert(taken, step)
    table.insert(taken, tostring(times))
  end
end
return taken
"""
)

#: The per-job Redis keys this module owns (suffixes of the job's key), deleted when a job ends or is rebuilt.
KEYS = ("stages", "stage_counts", "leases", "lease_steps", "expiries")


@dataclass(frozen=True)
class Expired:
    """A lease the reconciler took over: the pair's ``step`` outlived it for the ``times``-th time."""

    pair_id: str
    step: Stage
    times: int


class PairProgress:
    """The scripts, registered once per Redis client; each call names the job by its key prefix."""

    def __init__(self, client: Any) -> None:
        self.redis = client
        self._move = client.register_script(_MOVE)
        self._remove = client.register_script(_REMOVE)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._take_expired = client.register_script(_TAKE_EXPIRED)

    @staticmethod
    def _keys(job_key: str, *parts: str) -> list[str]:
        return [f"{job_key}:{part}" for part in parts]

    def move(self, job_key: str, pair_ids: Iterable[str], step: Stage, *, force: bool = False) -> int:
        """Each pair now waits for (or runs) ``step``; pairs already past it stay (unless ``force``), finished
        pairs stay finished. Returns how many moved."""
        ids = list(pair_ids)
        moved = 0
        for start in range(0, len(ids), 5000):  # bounded script arguments for very large jobs
            chunk = ids[start : start + 5000]
            keys = self._keys(job_key, "stages", "stage_counts", "counted")
            moved += int(self._move(keys=keys, args=[RANK[step], "1" if force else "0", *chunk]))
        return moved

    def rank(self, job_key: str, pair_id: str) -> int | None:
        """The rank (in `STEPS`) of the step the pair is at, or None when it is at none."""
        value = self.redis.hget(f"{job_key}:stages", pair_id)
        return None if value is None else int(value)

    def remove(self, job_key: str, pair_id: str) -> None:
        """The pair finished: off every step, its lease gone."""
        self._remove(keys=self._keys(job_key, "stages", "stage_counts", "leases", "lease_steps"), args=[pair_id])

    def counts(self, job_key: str) -> dict[str, int]:
        """Unfinished pairs by the step they wait for or run: one small hash, whatever the job's size."""
        raw = self.redis.hgetall(f"{job_key}:stage_counts")
        return {STEPS[int(rank)].value: int(count) for rank, count in sorted(raw.items()) if int(count) > 0}

    def acquire(self, job_key: str, pair_id: str, step: Stage, seconds: float) -> bool:
        """Hold the pair for ``seconds`` while ``step`` runs; False while another live task holds it."""
        keys = self._keys(job_key, "leases", "lease_steps")
        return bool(self._acquire(keys=keys, args=[pair_id, step.value, seconds]))

    def renew(self, job_key: str, pair_id: str, seconds: float) -> bool:
        """The heartbeat of a running step: its lease lasts ``seconds`` more; False if it was taken over."""
        return bool(self._renew(keys=[f"{job_key}:leases"], args=[pair_id, seconds]))

    def held_for(self, job_key: str, pair_id: str) -> float:
        """Seconds left on the pair's lease (0 when there is none)."""
        expiry = self.redis.zscore(f"{job_key}:leases", pair_id)
        if expiry is None:
            return 0.0
        seconds, micros = self.redis.time()
        return max(0.0, float(expiry) - (float(seconds) + float(micros) / 1e6))

    def release(self, job_key: str, pair_id: str) -> None:
        pipe = self.redis.pipeline()
        pipe.zrem(f"{job_key}:leases", pair_id)
        pipe.hdel(f"{job_key}:lease_steps", pair_id)
        pipe.execute()

    def take_expired(self, job_key: str, limit: int = 1000) -> list[Expired]:
        """The leases past their expiry, taken over (removed), with how often each pair's step outlived one."""
        keys = self._keys(job_key, "leases", "lease_steps", "expiries", "counted")
        flat = self._take_expired(keys=keys, args=[limit])
        return [Expired(flat[i], Stage(flat[i + 1]), int(flat[i + 2])) for i in range(0, len(flat), 3)]

    def clear(self, job_key: str) -> None:
        """Forget where every pair is (the job ended, or its progress is being rebuilt)."""
        self.redis.delete(*self._keys(job_key, *KEYS))
