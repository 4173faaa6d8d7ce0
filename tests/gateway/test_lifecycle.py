"""The job lifecycle under hostile input and real faults, as an operator and a hostile client would try it.

Everything here is a real process: a Redis server of the test's own (so that it can be killed and restarted
empty), a gateway (uvicorn), a Celery worker (its reconciler running), and the session's four model services.
Deadlines are short (service budgets of 10 s), so that the bounds can be measured. Each test asserts on the
job's data afterwards: one record per pair, no duplicates, every image a record names present, no step state
left, and nothing outside the job's folder touched.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock
from urllib.parse import quote

import httpx
import psutil
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.deps import hash_key
from services.launch import free_port, stop, worker_command
from spotdiff.jobs.deadlines import step_limits, visibility_timeout_s
from spotdiff.jobs.queues import ROUNDS_QUEUE, WORKER_QUEUES
from spotdiff.jobs.store import JobStore
from spotdiff.pipeline import STEPS
from spotdiff.protocol import SampleRecord
from spotdiff.protocol.ids import is_valid_id
from spotdiff.settings import Settings
from workers.reconciler import ALIVE

from .conftest import KEYS, gateway_process

EXAMPLES = Path(__file__).parents[2] / "examples" / "caption_pairs.jsonl"
ALICE = {"Authorization": f"Bearer {KEYS['alice']}"}
BOB = {"Authorization": f"Bearer {KEYS['bob']}"}
SHORT = {
    "SPOTDIFF_GENERATION__REQUEST_TIMEOUT_S": "10",
    "SPOTDIFF_SIMILARITY__REQUEST_TIMEOUT_S": "10",
    "SPOTDIFF_REGIONS__REQUEST_TIMEOUT_S": "10",
    "SPOTDIFF_CAPTIONING__REQUEST_TIMEOUT_S": "10",
    "SPOTDIFF_WORKER__STEP_MARGIN_S": "3",
    "SPOTDIFF_WORKER__STEP_GRACE_S": "2",
    "SPOTDIFF_WORKER__LEASE_S": "4",
    "SPOTDIFF_WORKER__RETRY_BACKOFF_S": "0.5",
    "SPOTDIFF_WORKER__RECONCILE_INTERVAL_S": "1",
}


def pairs(count: int, prefix: str) -> list[dict]:
    examples = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
    return [{**examples[i % len(examples)], "id": f"{prefix}{i:02d}", "seed": i} for i in range(count)]


class RedisServer:
    """A redis-server of the test's own, with nothing on disk: a restart starts it empty."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        self.process = subprocess.Popen(
            [*command, "no", "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(port=self.port)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: nothing saved, nothing flushed
        self.process.wait()


class Lifecycle:
    """The stack of this module: its Redis, a gateway process, a worker process, the session's services."""

    def __init__(self, stack: dict, directory: Path) -> None:
        self.redis = RedisServer(directory)
        self.storage = directory / "store"
        self.env = {
            **stack["env"],
            **SHORT,
            "SPOTDIFF_REDIS_URL": self.redis.url,
            "SPOTDIFF_STORAGE_URL": str(self.storage),
            "SPOTDIFF_GATEWAY__API_KEYS": json.dumps([hash_key(KEYS["alice"]), hash_key(KEYS["bob"])]),
        }
        with mock.patch.dict(os.environ, self.env):
            self.settings = Settings()  # what the gateway and the worker read from the same environment
        self.worker: subprocess.Popen[bytes] | None = None
        self.store = JobStore.from_url(self.redis.url, str(self.storage))
        self.url = ""  # the gateway's, once it runs

    def start_worker(self) -> None:
        self.worker = subprocess.Popen(
            worker_command(2), env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def stop_worker(self) -> None:
        if self.worker is not None:
            stop([self.worker])
            self.worker = None

    def longest_deadline(self) -> float:
        return max(step_limits(self.settings, step).deadline_s for step in STEPS)


@pytest.fixture(scope="module")
def lifecycle(stack: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lifecycle]:
    life = Lifecycle(stack, tmp_path_factory.mktemp("lifecycle"))
    try:
        with gateway_process(life.env) as url:
            life.url = url
            life.start_worker()
            yield life
    finally:
        life.stop_worker()
        life.redis.kill()


def client(life: Lifecycle) -> httpx.Client:
    return httpx.Client(base_url=life.url, headers=ALICE, timeout=30)


def wait_for(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, redis.ConnectionError):
            value = check()
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def finished(http: httpx.Client, job_id: str, timeout: float = 180) -> dict:
    def done() -> dict | None:
        status = http.get(f"/v1/jobs/{job_id}").json()
        return status if status.get("state") in ("done", "cancelled") else None

    return wait_for(done, timeout, f"job {job_id} to finish")


def files_outside(storage: Path, job_id: str) -> set[str]:
    """Every file of the store that is not in ``job_id``'s folder."""
    own = storage / "jobs" / job_id
    return {str(path.relative_to(storage)) for path in storage.rglob("*") if path.is_file() and own not in path.parents}


def assert_job_data(storage: Path, job_id: str, pair_ids: list[str]) -> list[SampleRecord]:
    """One record per pair and no other, every image a record names present, no step state left behind."""
    folder = storage / "jobs" / job_id
    names = sorted(path.name for path in (folder / "records").iterdir())
    assert names == sorted(f"{pair_id}.json" for pair_id in pair_ids), names
    records = [SampleRecord.model_validate_json((folder / "records" / name).read_bytes()) for name in names]
    for record in records:
        keys = [record.image_source, record.image_target]
        keys += [key for region in record.regions for key in (region.boxed_image_source, region.boxed_image_target)]
        for key in filter(None, keys):
            assert (folder / key).is_file(), f"{record.pair_id}: {key} is missing"
    assert not any((folder / "steps").glob("*/*")), "step state left behind"
    return records


def test_sigkill_of_the_worker_main_process_mid_step_finishes_every_pair_in_bounded_time(
    lifecycle: Lifecycle,
) -> None:
    life = lifecycle
    http = client(life)
    before = files_outside(life.storage, "kill-main")
    body = {"pairs": pairs(8, "k")}
    assert http.put("/v1/jobs/kill-main", json=body).status_code == 201
    leases = life.store.key("kill-main", "leases")
    running = life.store.redis
    wait_for(lambda: running.zcard(leases) > 0 and running.hlen("unacked") > 0, 60, "a step to be running")
    assert life.worker is not None
    main = psutil.Process(life.worker.pid)
    children = main.children()
    os.kill(main.pid, signal.SIGKILL)  # the Celery main process itself, mid-step
    killed = time.monotonic()
    life.worker.wait()
    _gone, alive = psutil.wait_procs(children, timeout=10)
    for orphan in alive:  # a pool process that outlived its parent would still be working
        orphan.kill()
    life.start_worker()  # the orchestrator restarts it
    status = finished(http, "kill-main", timeout=4 * life.longest_deadline())
    took = time.monotonic() - killed
    assert status["state"] == "done" and status["done"] == 8 and status["stages"] == {}
    assert took < 2 * life.longest_deadline(), f"{took:.0f}s after the kill"
    # the leases and the reconciler brought it back, not Redis' own redelivery after the visibility timeout
    assert took < visibility_timeout_s(life.settings), f"{took:.0f}s after the kill"
    assert_job_data(life.storage, "kill-main", [pair["id"] for pair in body["pairs"]])
    assert files_outside(life.storage, "kill-main") == before


def test_redis_restarted_empty_mid_job_loses_nothing_and_runs_nothing_twice(lifecycle: Lifecycle) -> None:
    life = lifecycle
    http = client(life)
    body = {"pairs": pairs(10, "r")}
    assert http.put("/v1/jobs/redis-restart", json=body).status_code == 201
    wait_for(lambda: http.get("/v1/jobs/redis-restart").json()["done"] >= 2, 120, "two pairs done")
    life.redis.kill()
    # Redis down: the job routes answer 503 in the envelope, with Retry-After; /readyz says what is missing
    down = http.get("/v1/jobs/redis-restart")
    assert down.status_code == 503 and down.headers["retry-after"]
    assert down.json()["error"]["code"] == "redis_unavailable"
    refused = http.post("/v1/jobs", json={"pairs": pairs(1, "x")})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "redis_unavailable"
    ready = http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("unreachable")
    assert ready.json()["checks"]["store"] == "ok"
    life.redis.start()  # empty: no queue, no progress
    status = finished(http, "redis-restart", timeout=240)
    assert status["state"] == "done" and status["done"] == 10
    records = assert_job_data(life.storage, "redis-restart", [pair["id"] for pair in body["pairs"]])
    assert all(record.provenance.seed == int(record.pair_id[1:]) for record in records)


def test_cancel_is_durable_across_a_redis_restart_and_a_finished_job_cannot_be_cancelled(
    lifecycle: Lifecycle,
) -> None:
    life = lifecycle
    http = client(life)
    life.stop_worker()  # the job must not get far before it is cancelled
    try:
        target = {"pairs": pairs(2, "t"), "target_accepted": 400, "budget_pairs": 1000}
        assert http.put("/v1/jobs/to-cancel", json=target).status_code == 201
        cancelled = http.delete("/v1/jobs/to-cancel")
        assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"
        assert cancelled.json()["stages"] == {}
        assert http.delete("/v1/jobs/to-cancel").status_code == 200  # cancelling again changes nothing
        assert (life.storage / "jobs/to-cancel/cancelled.json").is_file()
        life.redis.kill()
        life.redis.start()
        queued = redis.Redis.from_url(life.redis.url)
        life.start_worker()  # its reconciler finds Redis empty: a full scan of the store
        deadline = time.monotonic() + 60
        while not queued.exists(ALIVE) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert queued.exists(ALIVE), "no reconciler pass within 60 s"
        status = http.get("/v1/jobs/to-cancel").json()
        assert status["state"] == "cancelled" and status["stages"] == {}
        assert queued.hget("spotdiff:job:to-cancel", "state") == b"cancelled"  # rebuilt as cancelled
    finally:
        if life.worker is None:
            life.start_worker()
    assert not (life.storage / "jobs/to-cancel/records").exists()  # and nothing ran
    small = {"pairs": pairs(1, "f")}
    assert http.put("/v1/jobs/finished", json=small).status_code == 201
    assert finished(http, "finished")["state"] == "done"
    refused = http.delete("/v1/jobs/finished")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "job_finished"
    assert http.get("/v1/jobs/finished").json()["state"] == "done"
    assert not (life.storage / "jobs/finished/cancelled.json").exists()


def test_a_task_that_raises_ends_its_pair_with_an_internal_error_record(lifecycle: Lifecycle) -> None:
    """A manifest the worker cannot read (here: written by hand with a NaN setting): every pair still ends."""
    life = lifecycle
    http = client(life)
    body = {"pairs": pairs(2, "e")}
    life.stop_worker()
    try:
        assert http.put("/v1/jobs/broken", json=body).status_code == 201
        manifest = life.storage / "jobs/broken/manifest.json"
        data = json.loads(manifest.read_text())
        data["request"]["settings"] = {"pair_cosine_min": "NaN"}
        manifest.write_text(json.dumps(data))
    finally:
        life.start_worker()
    status = finished(http, "broken")
    assert status["done"] == 2 and status["funnel"] == {"generate:internal_error": 2}
    records = assert_job_data(life.storage, "broken", ["e00", "e01"])
    assert all("finite" in record.rejection.message for record in records if record.rejection)


def raw_put(url: str, path: str, body: bytes) -> tuple[int, dict]:
    """A PUT with the path exactly as given (httpx would remove dot segments before sending)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        headers = {**ALICE, "Content-Type": "application/json"}
        connection.request("PUT", path, body=body, headers=headers)
        answer = connection.getresponse()
        payload = answer.read()
        return answer.status, json.loads(payload) if payload.startswith(b"{") else {}
    finally:
        connection.close()


@pytest.fixture(scope="module")
def idle(lifecycle: Lifecycle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str]]:
    """A gateway with low per-key limits on database 1 of the module's Redis, where no worker listens:
    whatever it accepts stays queued, so its queues can be counted."""
    storage = tmp_path_factory.mktemp("idle-store")
    redis_url = lifecycle.redis.url.removesuffix("/0") + "/1"
    env = {
        **lifecycle.env,
        "SPOTDIFF_REDIS_URL": redis_url,
        "SPOTDIFF_STORAGE_URL": str(storage),
        "SPOTDIFF_GATEWAY__MAX_JOBS_IN_FLIGHT_PER_KEY": "3",
        "SPOTDIFF_GATEWAY__MAX_PAIRS_PER_MINUTE_PER_KEY": "60",
        "SPOTDIFF_GATEWAY__MAX_PAIRS_PER_JOB": "40",
        "SPOTDIFF_GATEWAY__METRICS_TOKEN": "scrape-me",
        "SPOTDIFF_GATEWAY__API_KEYS": json.dumps([hash_key(key) for key in KEYS.values()]),
    }
    with gateway_process(env) as url:
        yield url, storage, redis_url


def queued(redis_url: str) -> list[tuple[str, int]]:
    """The round tasks waiting (no worker listens here): which job's round each would send."""
    messages = redis.Redis.from_url(redis_url).lrange(ROUNDS_QUEUE, 0, -1)
    found = []
    for message in messages:
        headers = json.loads(message)["headers"]
        job_id, number, _ = ast.literal_eval(headers["argsrepr"])
        found.append((job_id, number))
    return found


async def test_concurrent_puts_create_a_job_once_and_enqueue_each_pair_once(idle: tuple[str, Path, str]) -> None:
    url, storage, redis_url = idle
    body = {"pairs": pairs(5, "s")}
    async with httpx.AsyncClient(base_url=url, headers=BOB, timeout=60) as http:
        answers = await asyncio.gather(*(http.put("/v1/jobs/storm", json=body) for _ in range(20)))
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [200] * 19 + [201], codes
        assert all(answer.json()["id"] == "storm" for answer in answers)
        assert queued(redis_url).count(("storm", 0)) == 1  # its pairs are sent once, not twenty times
        one, other = {"pairs": pairs(3, "a")}, {"pairs": pairs(4, "b")}
        racing = await asyncio.gather(*(http.put("/v1/jobs/race", json=one if n % 2 else other) for n in range(16)))
    created = [answer for answer in racing if answer.status_code == 201]
    assert len(created) == 1
    winner = one if created[0].json()["total"] == 3 else other
    manifest = json.loads((storage / "jobs/race/manifest.json").read_text())
    assert [pair["id"] for pair in manifest["request"]["pairs"]] == [pair["id"] for pair in winner["pairs"]]
    for answer in racing:
        if answer.status_code != 201:
            assert answer.status_code in (200, 409), answer.text
    assert queued(redis_url).count(("race", 0)) == 1  # the winner's pairs, once; the loser's never
    for job in ("storm", "race"):
        assert httpx.delete(f"{url}/v1/jobs/{job}", headers=BOB).status_code == 202


ODD_PATHS = [
    "/v1/jobs/.",
    "/v1/jobs/..",
    "/v1/jobs/%2e%2e",
    "/v1/jobs/%2E%2E",
    "/v1/jobs/%2e",
    "/v1/jobs/a%2Fb",
    "/v1/jobs/..%2F..",
    "/v1/jobs/%2e%2e%2f%2e%2e",
    "/v1/jobs/%00",
    "/v1/jobs/a..b",
    "/v1/jobs/.hidden",
    "/v1/jobs/" + "x" * 129,
]


def test_odd_job_and_pair_ids_are_refused_and_touch_nothing(idle: tuple[str, Path, str]) -> None:
    url, storage, _redis_url = idle
    before = sorted(str(path) for path in storage.rglob("*"))
    body = json.dumps({"pairs": pairs(1, "o")}).encode()
    for path in ODD_PATHS:
        status, answer = raw_put(url, path, body)
        assert status in (404, 405, 422), (path, status, answer)
        if status == 422:
            assert "job id" in answer["error"]["message"], answer
    for odd in ["..", ".", "a/../b", "%2e%2e", "a\\b", " ", ".x", "x."]:
        bad = {"pairs": [{"id": odd, "source": "A dog on the grass", "target": "A cat on the grass"}]}
        status, answer = raw_put(url, "/v1/jobs/fine-id", json.dumps(bad).encode())
        assert status == 422 and answer["error"]["message"].startswith("pairs.0.id"), (odd, answer)
        assert "pair id" in answer["error"]["message"]
    assert sorted(str(path) for path in storage.rglob("*")) == before


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(job_id=st.text(min_size=1, max_size=40))
def test_any_job_id_is_a_folder_of_its_own_or_refused(lifecycle: Lifecycle, job_id: str) -> None:
    url, storage = lifecycle.url, lifecycle.storage
    body = json.dumps({"pairs": pairs(1, "h")}).encode()
    status, _ = raw_put(url, f"/v1/jobs/{quote(job_id, safe='')}", body)
    assert status < 500
    if status in (200, 201):
        assert is_valid_id(job_id) and (storage / "jobs" / job_id / "manifest.json").is_file()
        httpx.delete(f"{url}/v1/jobs/{quote(job_id, safe='')}", headers=ALICE)
    else:
        assert status in (307, 404, 405, 422), status  # 307: a slash collapsed, redirected
    assert {path.name for path in storage.iterdir()} <= {"jobs"}
    assert all(is_valid_id(path.name) for path in (storage / "jobs").iterdir())


@pytest.mark.parametrize(
    "raw",
    [
        b'"settings": {"pair_cosine_min": NaN}',
        b'"settings": {"nms_iou": Infinity}',
        b'"settings": {"crop_cosine_max": -Infinity}',
        b'"settings": {"text_match_min": 1e999}',
        b'"settings": {"max_boxes": -5}',
        b'"settings": {"label_max_new_tokens": 1000000000000}',
        b'"settings": {"concurrency": 4}',
        b'"target_accepted": 1000000000000',
        b'"target_accepted": 5, "budget_seconds": NaN',
        b'"budget_pairs": 5',
    ],
)
def test_nan_infinity_and_out_of_range_settings_are_422_and_create_nothing(
    idle: tuple[str, Path, str], raw: bytes
) -> None:
    url, storage, _ = idle
    jobs = sorted((storage / "jobs").iterdir()) if (storage / "jobs").exists() else []
    body = b'{"pairs": [{"id": "n", "source": "A dog on the grass", "target": "A cat on the grass"}], ' + raw + b"}"
    answer = httpx.post(f"{url}/v1/jobs", content=body, headers={**ALICE, "Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid_request"
    assert (sorted((storage / "jobs").iterdir()) if (storage / "jobs").exists() else []) == jobs


def test_each_key_gets_its_own_limits_and_a_429_with_retry_after(idle: tuple[str, Path, str]) -> None:
    url, _, _ = idle
    carol = {"Authorization": f"Bearer {KEYS['carol']}"}
    made = []
    for number in range(3):
        answer = httpx.post(f"{url}/v1/jobs", json={"pairs": pairs(2, f"l{number}")}, headers=carol)
        assert answer.status_code == 202, answer.text
        made.append(answer.json()["id"])
    over = httpx.post(f"{url}/v1/jobs", json={"pairs": pairs(2, "l3")}, headers=carol)
    assert over.status_code == 429 and over.json()["error"]["code"] == "jobs_in_flight"
    assert float(over.headers["retry-after"]) >= 1
    assert httpx.post(f"{url}/v1/jobs", json={"pairs": pairs(2, "d")}, headers=ALICE).status_code == 202
    for job in made[:2]:  # two slots free again
        assert httpx.delete(f"{url}/v1/jobs/{job}", headers=carol).status_code == 202
    big = httpx.post(f"{url}/v1/jobs", json={"pairs": pairs(40, "big")}, headers=carol)
    assert big.status_code == 202  # 6 of 60 pairs used this minute
    again = httpx.post(f"{url}/v1/jobs", json={"pairs": pairs(40, "big")}, headers=carol)
    assert again.status_code == 429 and again.json()["error"]["code"] == "pairs_per_minute"  # 14 left
    assert 20 <= float(again.headers["retry-after"]) <= 30  # 26 more at one a second
    for job in (made[2], big.json()["id"]):
        assert httpx.delete(f"{url}/v1/jobs/{job}", headers=carol).status_code == 202


def test_metrics_need_their_token_when_one_is_set(idle: tuple[str, Path, str]) -> None:
    url, _, _ = idle
    assert httpx.get(f"{url}/metrics").status_code == 401
    assert httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert scraped.status_code == 200 and "spotdiff_requests_total" in scraped.text


def test_metrics_can_move_to_a_port_of_their_own(lifecycle: Lifecycle, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **lifecycle.env,
        "SPOTDIFF_REDIS_URL": lifecycle.redis.url.removesuffix("/0") + "/2",
        "SPOTDIFF_STORAGE_URL": str(tmp_path),
        "SPOTDIFF_GATEWAY__METRICS_PORT": str(port),
    }
    with gateway_process(env) as url:
        assert httpx.get(f"{url}/metrics").status_code == 404
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert scraped.status_code == 200 and "spotdiff_requests_total" in scraped.text


def test_a_round_planned_but_never_sent_is_sent_by_the_reconciler(lifecycle: Lifecycle) -> None:
    """The planner died between writing a round and sending it: the reconciler sends it after a grace."""
    life = lifecycle
    store = life.store
    http = client(life)
    body = {"pairs": pairs(2, "u")}
    life.stop_worker()
    try:
        assert http.put("/v1/jobs/unsent", json=body).status_code == 201
        redis.Redis.from_url(life.redis.url).delete(*WORKER_QUEUES)  # as if the sender died before sending
        store.redis.hdel(store.key("unsent", "sent"), 0)
        store.redis.hset(store.key("unsent", "planned"), 0, time.time() - 120)
    finally:
        life.start_worker()
    status = finished(http, "unsent", timeout=120)
    assert status["done"] == 2
    assert_job_data(life.storage, "unsent", ["u00", "u01"])
