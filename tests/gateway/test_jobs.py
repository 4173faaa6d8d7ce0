"""Jobs end to end: the gateway in this process, Celery on real Redis, services as real processes."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import redis

from gateway.app import create_app
from gateway.deps import hash_key
from spotdiff.cli import main
from spotdiff.exports import EXPORTS, FORMATS, export
from spotdiff.jobs.queues import WORKER_QUEUES
from spotdiff.jobs.store import JobStore
from spotdiff.protocol.jobs import JobManifest, JobRequest, SubmittedPair
from spotdiff.settings import Settings

from .conftest import KEYS, REDIS_URL, gateway_process

EXAMPLES = Path(__file__).parents[2] / "examples" / "caption_pairs.jsonl"


def example_pairs() -> list[dict]:
    return [json.loads(line) for line in EXAMPLES.read_text().splitlines()]


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


@pytest_asyncio.fixture(scope="module")
async def gateway(stack: dict) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        profile="tiny",
        redis_url=REDIS_URL,
        storage_url=str(stack["storage"]),
        gateway={"api_keys": [hash_key(key) for key in KEYS.values()]},
        worker={"service_urls": stack["urls"]},
    )
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        yield client


async def wait_done(client: httpx.AsyncClient, job_id: str, who: str = "alice", timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = (await client.get(f"/v1/jobs/{job_id}", headers=auth(who))).json()
        if status["state"] in ("done", "cancelled"):
            return status
        await asyncio.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish: {status}")


async def test_a_job_runs_to_the_end_and_exports(gateway: httpx.AsyncClient) -> None:
    pairs = example_pairs()
    created = await gateway.post("/v1/jobs", json={"pairs": pairs}, headers=auth("alice"))
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    status = await wait_done(gateway, job_id)
    assert status["state"] == "done" and status["done"] == status["total"] == len(pairs)
    assert status["accepted"] + status["rejected"] == len(pairs) and status["accepted"] >= 1
    assert sum(status["funnel"].values()) == len(pairs)

    page = (await gateway.get(f"/v1/jobs/{job_id}/samples", params={"limit": 4}, headers=auth("alice"))).json()
    assert page["total"] == len(pairs) and len(page["items"]) == 4 and page["next_offset"] == 4

    export = await gateway.get(f"/v1/jobs/{job_id}/export", params={"format": "llava"}, headers=auth("alice"))
    assert export.status_code == 200 and export.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(export.content))
    records = json.loads(archive.read("llava.json"))
    assert records and all(r["image"] in archive.namelist() for r in records)
    assert len({r["id"] for r in records}) == len(records)  # no sample twice

    events = []
    async with gateway.stream("GET", f"/v1/jobs/{job_id}/events", headers=auth("alice")) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
    assert events[0] == "created" and events[-1] == "done" and events.count("pair") == len(pairs)


async def test_keys_guard_jobs(gateway: httpx.AsyncClient) -> None:
    body = {"pairs": example_pairs()[:1]}
    assert (await gateway.post("/v1/jobs", json=body)).status_code == 401
    assert (await gateway.post("/v1/jobs", json=body, headers={"Authorization": "Bearer nope"})).status_code == 401
    job_id = (await gateway.post("/v1/jobs", json=body, headers=auth("alice"))).json()["id"]
    assert (await gateway.get(f"/v1/jobs/{job_id}", headers=auth("bob"))).status_code == 403
    assert (await gateway.get("/v1/jobs/nothing-here", headers=auth("bob"))).status_code == 404


async def test_put_is_idempotent(gateway: httpx.AsyncClient) -> None:
    body = {"pairs": example_pairs()[:2]}
    first = await gateway.put("/v1/jobs/my-batch-1", json=body, headers=auth("alice"))
    again = await gateway.put("/v1/jobs/my-batch-1", json=body, headers=auth("alice"))
    assert (first.status_code, again.status_code) == (201, 200) and again.json()["id"] == "my-batch-1"
    other = await gateway.put("/v1/jobs/my-batch-1", json={"pairs": example_pairs()[2:3]}, headers=auth("alice"))
    assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"
    assert (await gateway.put("/v1/jobs/my-batch-1", json=body, headers=auth("bob"))).status_code == 403
    status = await wait_done(gateway, "my-batch-1")
    assert status["done"] == 2  # submitted twice, run once


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"pairs": []}, "invalid_request"),
        ({"pairs": [{"id": "a", "source": "", "target": "A cat"}]}, "invalid_request"),
        ({"pairs": [{"id": "a", "source": "A dog", "target": "a dog"}]}, "invalid_request"),
        ({"pairs": [{"id": "a", "source": "x" * 2000, "target": "A cat"}]}, "invalid_request"),
        ({"pairs": [{"id": "a", "source": "A dog", "target": "A cat", "colour": 1}]}, "invalid_request"),
        ({"pairs": [{"id": "a", "source": "A dog", "target": "A cat"}] * 2}, "invalid_request"),
        (
            {"pairs": [{"id": "a", "source": "A dog", "target": "A cat"}], "settings": {"semantics": "x"}},
            "invalid_request",
        ),
        (
            {"pairs": [{"id": "a", "source": "A dog", "target": "A cat"}], "settings": {"nonsense": 1}},
            "invalid_request",
        ),
    ],
)
async def test_bad_jobs_are_422(gateway: httpx.AsyncClient, body: dict, code: str) -> None:
    response = await gateway.post("/v1/jobs", json=body, headers=auth("alice"))
    assert response.status_code == 422 and response.json()["error"]["code"] == code


async def drained(client: redis.Redis, timeout: float = 120) -> None:
    """Wait until the worker has taken and finished every task on every queue (none waiting, none unacked)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pipe = client.pipeline()
        for queue in WORKER_QUEUES:
            pipe.llen(queue)
        pipe.hlen("unacked")
        if not any(pipe.execute()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the queues did not drain")


async def test_cancel_stops_a_job(gateway: httpx.AsyncClient) -> None:
    pairs = [{**pair, "id": f"c{index}"} for index, pair in enumerate(example_pairs() * 3)]
    job_id = (await gateway.post("/v1/jobs", json={"pairs": pairs}, headers=auth("alice"))).json()["id"]
    cancelled = await gateway.delete(f"/v1/jobs/{job_id}", headers=auth("alice"))
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"
    await drained(redis.Redis.from_url(REDIS_URL))  # every task the job had sent was taken, and stopped
    status = (await gateway.get(f"/v1/jobs/{job_id}", headers=auth("alice"))).json()
    assert status["state"] == "cancelled" and status["done"] < len(pairs)


async def test_redis_losing_a_job_is_recovered_from_the_store(gateway: httpx.AsyncClient, stack: dict) -> None:
    job_id = (await gateway.post("/v1/jobs", json={"pairs": example_pairs()[:3]}, headers=auth("alice"))).json()["id"]
    before = await wait_done(gateway, job_id)
    store = JobStore.from_url(REDIS_URL, str(stack["storage"]))
    for key in store.redis.keys(f"spotdiff:job:{job_id}*"):
        store.redis.delete(key)
    after = (await gateway.get(f"/v1/jobs/{job_id}", headers=auth("alice"))).json()
    assert (after["done"], after["accepted"], after["state"]) == (before["done"], before["accepted"], "done")
    assert after["funnel"] == before["funnel"]


async def test_a_jobs_folder_is_a_run_folder_the_command_line_reads(
    gateway: httpx.AsyncClient, stack: dict, tmp_path: Path
) -> None:
    job_id = (await gateway.post("/v1/jobs", json={"pairs": example_pairs()[:3]}, headers=auth("alice"))).json()["id"]
    await wait_done(gateway, job_id)
    served = await all_samples(gateway, job_id)
    folder = Path(stack["storage"]) / "jobs" / job_id
    written = export(folder, "jsonl", tmp_path / "jsonl")
    assert [json.loads(line) for line in written.read_text().splitlines()] == served
    assert main(["report", str(folder), "--out", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert all(sample["pair_id"] in page for sample in served)
    for export_format in FORMATS:  # every format through the gateway: the files the command line writes
        answer = await gateway.get(f"/v1/jobs/{job_id}/export", params={"format": export_format}, headers=auth("alice"))
        assert answer.status_code == 200, (export_format, answer.text[:200])
        local = export(folder, export_format, tmp_path / export_format)
        if not EXPORTS[export_format].zipped:
            assert answer.content == local.read_bytes()
            continue
        names = set(zipfile.ZipFile(io.BytesIO(answer.content)).namelist())
        written = {path.relative_to(local.parent).as_posix() for path in local.parent.rglob("*") if path.is_file()}
        assert names == written, export_format


async def all_samples(client: httpx.AsyncClient, job_id: str) -> list[dict]:
    items: list[dict] = []
    offset: int | None = 0
    while offset is not None:
        page = (await client.get(f"/v1/jobs/{job_id}/samples", params={"offset": offset}, headers=auth("alice"))).json()
        items += page["items"]
        offset = page["next_offset"]
    return items


async def test_a_job_with_a_target_ends_with_exactly_that_many_samples(gateway: httpx.AsyncClient) -> None:
    # Half the pairs change no object word ("on" -> "in"): a yield of about 0.5 the rounds must learn
    good = [{**pair, "id": f"good-{n}"} for n, pair in enumerate(example_pairs()[:2])]
    bad = [
        {"id": "bad-0", "source": "A dog on the grass", "target": "A dog in the grass"},
        {"id": "bad-1", "source": "A cup on a table", "target": "A cup under a table"},
    ]
    body = {"pairs": good + bad, "target_accepted": 20}
    job_id = (await gateway.post("/v1/jobs", json=body, headers=auth("alice"))).json()["id"]
    status = await wait_done(gateway, job_id, timeout=400)
    assert status["state"] == "done" and status["stopped"] == "target_reached"
    assert status["accepted"] == 20 and status["rounds"] >= 2 and status["target_accepted"] == 20
    samples = await all_samples(gateway, job_id)
    accepted = [sample for sample in samples if sample["status"] == "accepted"]
    assert len(accepted) == 20 and len({sample["pair_id"] for sample in samples}) == len(samples)
    assert any("--v" in sample["pair_id"] for sample in accepted)  # variations of the given pairs
    seeds = [sample["provenance"]["seed"] for sample in accepted]
    assert len(set(seeds)) == len(seeds)  # every variation has its own seed
    surplus = [s for s in samples if s["status"] == "surplus"]
    assert all(s["rejection"] is None and s["regions"] for s in surplus)  # samples past the target, kept
    export = await gateway.get(f"/v1/jobs/{job_id}/export", params={"format": "llava"}, headers=auth("alice"))
    with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
        records = json.loads(archive.read("llava.json"))
    exported = {record["id"].rsplit("_", 1)[0] for record in records}
    assert exported == {sample["pair_id"] for sample in accepted}  # the 20 samples, no surplus


async def test_a_job_with_a_target_stops_at_its_pair_budget(gateway: httpx.AsyncClient) -> None:
    bad = [{"id": "never", "source": "A dog on the grass", "target": "A dog in the grass"}]
    body = {"pairs": bad, "target_accepted": 5, "budget_pairs": 7}
    job_id = (await gateway.post("/v1/jobs", json=body, headers=auth("alice"))).json()["id"]
    status = await wait_done(gateway, job_id, timeout=120)
    assert status["stopped"] == "budget_pairs" and status["accepted"] == 0 and status["total"] == 7
    assert status["done"] == 7 and status["rounds"] == 2


async def test_a_store_out_of_reach_is_a_503_and_readyz_names_it(tmp_path: Path) -> None:
    store = tmp_path / "store"
    settings = Settings(profile="tiny", redis_url=REDIS_URL, storage_url=str(store))
    app = create_app(settings)
    store.rmdir()
    store.write_text("not a folder")  # every read and write of the store now fails
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        answer = await client.put("/v1/jobs/no-store", json={"pairs": example_pairs()[:1]})
        assert answer.status_code == 503 and answer.headers["retry-after"]
        assert answer.json()["error"]["code"] == "store_unavailable"
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["store"].startswith("unreachable")
        assert ready.json()["checks"]["redis"] == "ok"
    jobs = JobStore.from_url(REDIS_URL, str(tmp_path))
    assert not jobs.redis.exists(jobs.key("no-store", "claim"))  # a failed create leaves the id free


async def test_each_caller_lists_their_own_jobs_newest_first_by_state(gateway: httpx.AsyncClient) -> None:
    pair = {key: example_pairs()[0][key] for key in ("id", "source", "target")}
    created = []
    for _ in range(3):
        answer = await gateway.post("/v1/jobs", json={"pairs": [pair]}, headers=auth("carol"))
        assert answer.status_code == 202, answer.text
        created.append(answer.json()["id"])
    bobs = (await gateway.post("/v1/jobs", json={"pairs": [pair]}, headers=auth("bob"))).json()["id"]
    cancelled = await gateway.delete(f"/v1/jobs/{created[1]}", headers=auth("carol"))
    assert cancelled.status_code in (200, 202, 409), cancelled.text
    for job_id in (created[0], created[2]):
        await wait_done(gateway, job_id, "carol")

    listed = (await gateway.get("/v1/jobs", headers=auth("carol"))).json()
    assert [job["id"] for job in listed["items"]] == created[::-1] and listed["total"] == 3
    assert listed["next_offset"] is None and bobs not in {job["id"] for job in listed["items"]}
    first = (await gateway.get("/v1/jobs", params={"limit": 2}, headers=auth("carol"))).json()
    rest = (await gateway.get("/v1/jobs", params={"offset": first["next_offset"]}, headers=auth("carol"))).json()
    assert [job["id"] for job in first["items"] + rest["items"]] == created[::-1] and first["next_offset"] == 2
    states = {job["id"]: job["state"] for job in listed["items"]}
    done = (await gateway.get("/v1/jobs", params={"state": "done"}, headers=auth("carol"))).json()
    assert {job["id"] for job in done["items"]} == {job_id for job_id, state in states.items() if state == "done"}
    both = await gateway.get("/v1/jobs", params=[("state", "done"), ("state", "cancelled")], headers=auth("carol"))
    assert both.json()["total"] == 3
    assert (await gateway.get("/v1/jobs", params={"state": "lost"}, headers=auth("carol"))).status_code == 422
    assert (await gateway.get("/v1/jobs", params={"limit": 0}, headers=auth("carol"))).status_code == 422
    assert (await gateway.get("/v1/jobs")).status_code == 401
    bobs_list = (await gateway.get("/v1/jobs", headers=auth("bob"))).json()["items"]
    assert bobs_list[0]["id"] == bobs and all(job["id"] not in created for job in bobs_list)


async def test_the_job_list_comes_back_after_redis_lost_it(gateway: httpx.AsyncClient, stack: dict) -> None:
    from spotdiff.jobs.recovery import rebuild
    from spotdiff.jobs.store import OWNER_JOBS

    pair = {key: example_pairs()[0][key] for key in ("id", "source", "target")}
    job_id = (await gateway.post("/v1/jobs", json={"pairs": [pair]}, headers=auth("alice"))).json()["id"]
    await wait_done(gateway, job_id)
    store = JobStore.from_url(REDIS_URL, str(stack["storage"]))
    store.redis.delete(OWNER_JOBS.format(owner=hash_key(KEYS["alice"])), store.key(job_id))
    assert job_id not in {job["id"] for job in (await gateway.get("/v1/jobs", headers=auth("alice"))).json()["items"]}
    rebuild(store, job_id)  # what the reconciler does for a job whose progress Redis lost
    listed = (await gateway.get("/v1/jobs", headers=auth("alice"))).json()["items"]
    assert [job["state"] for job in listed if job["id"] == job_id] == ["done"]


async def read_events(
    client: httpx.AsyncClient, job_id: str, headers: dict[str, str], seconds: float | None = None
) -> tuple[list[dict], list[str]]:
    """The stream as an EventSource reads it: events (id, event, data as JSON) and comment lines, until it ends
    (or for ``seconds``)."""
    events: list[dict] = []
    comments: list[str] = []
    current: dict = {}
    deadline = time.monotonic() + seconds if seconds else None
    async with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        async for line in stream.aiter_lines():
            if line.startswith(":"):
                comments.append(line)
            elif line == "" and current:
                events.append({**current, "data": json.loads(current["data"])})
                current = {}
            elif line:
                field, _, value = line.partition(": ")
                current[field] = value
            if deadline is not None and time.monotonic() > deadline:
                break
    return events, comments


async def test_the_event_stream_resumes_after_the_last_event_seen(gateway: httpx.AsyncClient) -> None:
    pairs = example_pairs()[:3]
    job_id = (await gateway.post("/v1/jobs", json={"pairs": pairs}, headers=auth("alice"))).json()["id"]
    await wait_done(gateway, job_id)
    events, _ = await read_events(gateway, job_id, auth("alice"))
    assert events[0]["event"] == "created" and events[-1]["event"] == "done"
    assert events[0]["data"]["total"] == 3  # a number, not "3"
    assert all(event["id"] for event in events) and len({event["id"] for event in events}) == len(events)
    resumed, _ = await read_events(gateway, job_id, {**auth("alice"), "Last-Event-ID": events[1]["id"]})
    assert resumed == events[2:]
    bad = await gateway.get(f"/v1/jobs/{job_id}/events", headers={**auth("alice"), "Last-Event-ID": "x; DROP"})
    assert bad.status_code == 422


async def test_a_quiet_event_stream_sends_keep_alive_comments(stack: dict) -> None:
    """Through a real server (uvicorn streams as proxies see it): a job with nothing to report keeps its stream
    alive with comments."""
    env = {
        **stack["env"],
        "SPOTDIFF_STORAGE_URL": str(stack["storage"]),
        "SPOTDIFF_GATEWAY__API_KEYS": json.dumps([hash_key(KEYS["alice"])]),
        "SPOTDIFF_GATEWAY__EVENTS_KEEPALIVE_S": "0.3",
    }
    store = JobStore.from_url(REDIS_URL, str(stack["storage"]))
    job_id = f"quiet-{time.time_ns()}"
    request = JobRequest(pairs=[SubmittedPair(id="a", source="A dog", target="A cat")])
    manifest = JobManifest(
        id=job_id, owner=hash_key(KEYS["alice"]), request=request, fingerprint="f", created=time.time()
    )
    store.create(manifest)  # never sent to the workers: after "created" the stream has nothing to say
    try:
        with gateway_process(env) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                events, comments = await read_events(client, job_id, auth("alice"), seconds=1.5)
    finally:
        store.cancel(job_id)
    assert [event["event"] for event in events] == ["created"]
    assert len(comments) >= 2


async def test_samples_filter_by_outcome_and_words(gateway: httpx.AsyncClient) -> None:
    pairs = example_pairs()[:4]
    job_id = (await gateway.post("/v1/jobs", json={"pairs": pairs}, headers=auth("alice"))).json()["id"]
    status = await wait_done(gateway, job_id)

    async def page(**params: object) -> dict:
        answer = await gateway.get(f"/v1/jobs/{job_id}/samples", params=params, headers=auth("alice"))
        assert answer.status_code == 200, answer.text
        return answer.json()

    for outcome, count in status["funnel"].items():
        found = await page(outcome=outcome)
        assert found["total"] == count and all(
            (
                item["status"]
                if item["rejection"] is None
                else f"{item['rejection']['stage']}:{item['rejection']['reason']}"
            )
            == outcome
            for item in found["items"]
        )
    one = await page(q=pairs[2]["id"].upper())
    assert [item["pair_id"] for item in one["items"]] == [pairs[2]["id"]]
    words = pairs[0]["source"].split()[1:3]  # words of a caption, in any order
    assert pairs[0]["id"] in {item["pair_id"] for item in (await page(q=" ".join(reversed(words))))["items"]}
    paged = await page(outcome="accepted", limit=1, offset=1)
    assert paged["total"] == status["accepted"] and len(paged["items"]) == min(1, max(0, status["accepted"] - 1))
    assert (await page(outcome="nowhere:never"))["total"] == 0
    too_long = await gateway.get(f"/v1/jobs/{job_id}/samples", params={"q": "x" * 201}, headers=auth("alice"))
    assert too_long.status_code == 422


async def test_a_job_of_single_captions_runs_with_its_rewrites_in_the_records(gateway: httpx.AsyncClient) -> None:
    captions = ["A dog on the grass", "Two cats sleeping on a sofa"]
    body = {"captions": captions, "rewrites_per_caption": 2}
    created = await gateway.put("/v1/jobs/from-captions", json=body, headers=auth("alice"))
    assert created.status_code == 201, created.text
    assert created.json()["total"] == 4
    status = await wait_done(gateway, "from-captions")
    assert status["done"] == status["total"] == 4
    records = (await gateway.get("/v1/jobs/from-captions/samples", headers=auth("alice"))).json()["items"]
    assert sorted(record["pair_id"] for record in records) == ["l1-r0", "l1-r1", "l2-r0", "l2-r1"]
    for record in records:
        origin = record["provenance"]["rewrite"]
        assert origin["rewriter"] == "lexicon" and origin["caption"] == record["source"]
        assert origin["caption"] == captions[int(record["pair_id"][1]) - 1] and record["target"] != record["source"]
        assert [origin["replaced"]] == record["source_objects"] and [origin["replacement"]] == record["target_objects"]
    again = await gateway.put("/v1/jobs/from-captions", json=body, headers=auth("alice"))
    assert again.status_code == 200  # the same captions again: the same job


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"captions": ["The sky at night"]}, "no_pairs"),
        ({"captions": ["A dog on the grass"], "pairs": example_pairs()[:1]}, "invalid_request"),
        ({}, "invalid_request"),
        ({"captions": ["A dog"], "rewrites_per_caption": 21}, "invalid_request"),
        ({"captions": [""]}, "invalid_request"),
        ({"captions": ["A dog on the grass"], "variation": "rewrite"}, "invalid_request"),  # no target
        ({"pairs": example_pairs()[:1], "target_accepted": 2, "variation": "rewrite"}, "invalid_request"),
    ],
)
async def test_bad_caption_jobs_are_422(gateway: httpx.AsyncClient, body: dict, code: str) -> None:
    answer = await gateway.post("/v1/jobs", json=body, headers=auth("alice"))
    assert answer.status_code == 422 and answer.json()["error"]["code"] == code, answer.text


async def test_captions_are_counted_by_the_generation_models_tokenizers(gateway: httpx.AsyncClient) -> None:
    """Each digit is a token of CLIP's: a caption of 23 words and marks is 83 tokens, too long for the text
    encoders, though an estimate by words would let it through."""
    digits = "A dog on the grass at " + " ".join(["12345"] * 15)
    answer = await gateway.post("/v1/jobs", json={"captions": [digits]}, headers=auth("alice"))
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "no_pairs" and error["details"] == ["caption 1: too_long"]


async def test_rewrites_that_give_no_pair_are_the_jobs_rejections_at_stage_rewrite(
    gateway: httpx.AsyncClient,
) -> None:
    body = {"captions": ["A dog on the grass", "The sky at night"]}
    created = await gateway.put("/v1/jobs/with-a-drop", json=body, headers=auth("alice"))
    assert created.status_code == 201 and created.json()["total"] == 2, created.text
    status = await wait_done(gateway, "with-a-drop")
    assert status["done"] == status["total"] == 2 and status["funnel"]["rewrite:no_known_noun"] == 1
    records = (await gateway.get("/v1/jobs/with-a-drop/samples", headers=auth("alice"))).json()["items"]
    (drop,) = [
        record for record in records if record["status"] == "rejected" and record["rejection"]["stage"] == "rewrite"
    ]
    assert drop["pair_id"] == "l2-r0" and drop["source"] == "The sky at night"
    assert drop["provenance"]["rewrite"]["caption"] == "The sky at night"


async def test_a_job_with_a_target_draws_new_rewrites_not_new_seeds(gateway: httpx.AsyncClient) -> None:
    captions = ["A dog on the grass", "A red car parked on a city street"]
    body = {"captions": captions, "target_accepted": 5, "budget_pairs": 8, "variation": "rewrite"}
    created = await gateway.put("/v1/jobs/new-rewrites", json=body, headers=auth("alice"))
    assert created.status_code == 201, created.text
    status = await wait_done(gateway, "new-rewrites")
    assert status["accepted"] >= 5
    records = (await gateway.get("/v1/jobs/new-rewrites/samples", headers=auth("alice"))).json()["items"]
    ids = [record["pair_id"] for record in records]
    assert not any("--v" in pair_id for pair_id in ids)  # every pair is a rewrite of its own, none a reseed
    # every caption's first rewrite before any second one
    numbers = sorted(int(pair_id.split("-r")[1]) for pair_id in ids)
    assert numbers[: len(captions)] == [0] * len(captions) and max(numbers) >= 1
    targets = [record["target"] for record in records]
    assert len(set(targets)) == len(targets)


async def test_a_pool_of_rewrites_keeps_a_record_of_the_caption_that_gave_none(gateway: httpx.AsyncClient) -> None:
    body = {"captions": ["A dog on the grass", "The sky at night"], "target_accepted": 2, "budget_pairs": 4}
    created = await gateway.put(
        "/v1/jobs/pool-with-a-drop", json={**body, "variation": "rewrite"}, headers=auth("alice")
    )
    assert created.status_code == 201, created.text
    status = await wait_done(gateway, "pool-with-a-drop")
    assert status["funnel"]["rewrite:no_known_noun"] == 1
    records = (await gateway.get("/v1/jobs/pool-with-a-drop/samples", headers=auth("alice"))).json()["items"]
    drops = [
        record for record in records if record["status"] == "rejected" and record["rejection"]["stage"] == "rewrite"
    ]
    assert [(drop["pair_id"], drop["source"]) for drop in drops] == [("l2-r0", "The sky at night")]
    assert all(record["pair_id"].startswith("l1-") for record in records if record not in drops)


class StandInRewriter:
    """A rewriting service as a good language model would answer (dog becomes cat), on a port of its own."""

    MODEL = "stand-in/vicuna-7b-v1.5"

    def __init__(self) -> None:
        import threading

        import uvicorn
        from fastapi import FastAPI

        from services.launch import free_port

        app = FastAPI()

        @app.get("/readyz")
        def ready() -> dict:
            return {"status": "ready"}

        @app.post("/v1/rewrites")
        def rewrite(body: dict) -> dict:
            text = body["caption"].replace("dog", "cat")
            return {"text": text, "reason": "rewritten", "answer": text, "tokens": 6, "model_id": self.MODEL}

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


async def test_a_job_of_captions_rewritten_by_the_language_model(stack: dict) -> None:
    rewriter = StandInRewriter()
    settings = Settings(
        profile="tiny",
        rewriter="model",
        redis_url=REDIS_URL,
        storage_url=str(stack["storage"]),
        gateway={"api_keys": [hash_key(KEYS["alice"]), hash_key(KEYS["bob"])]},
        worker={"service_urls": {**stack["urls"], "rewriting": f"http://127.0.0.1:{rewriter.port}"}},
    )
    try:
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as gateway:
            body = {"captions": ["A dog on the grass", "A bus on a street"]}
            created = await gateway.put("/v1/jobs/by-the-model", json=body, headers=auth("alice"))
            assert created.status_code == 201 and created.json()["total"] == 2, created.text
            status = await wait_done(gateway, "by-the-model")
            assert status["funnel"]["rewrite:same_sentence"] == 1  # the bus stays a bus: no pair, kept as such
            records = (await gateway.get("/v1/jobs/by-the-model/samples", headers=auth("alice"))).json()["items"]
            (record,) = [record for record in records if record["pair_id"] == "l1-r0"]
            origin = record["provenance"]["rewrite"]
            assert origin["rewriter"] == StandInRewriter.MODEL and record["target"] == "A cat on the grass"
            assert (origin["replaced"], origin["replacement"]) == ("dog", "cat")
    finally:
        rewriter.close()
    # with the rewriting service gone, a job of captions is refused, not accepted and lost
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as gateway:
        refused = await gateway.post("/v1/jobs", json={"captions": ["A dog on a sofa"]}, headers=auth("alice"))
        assert refused.status_code == 503 and refused.headers["Retry-After"], refused.text
        # but the same body again to its id is the same job, answered before any rewrite is asked for
        again = await gateway.put("/v1/jobs/by-the-model", json=body, headers=auth("alice"))
        assert again.status_code == 200 and again.json()["total"] == 2, again.text
        other = await gateway.put("/v1/jobs/by-the-model", json={"captions": ["A cow"]}, headers=auth("alice"))
        assert other.status_code == 409, other.text
        theirs = await gateway.put("/v1/jobs/by-the-model", json=body, headers=auth("bob"))
        assert theirs.status_code == 403, theirs.text


async def test_with_the_generation_service_gone_captions_are_refused_and_pairs_still_accepted(stack: dict) -> None:
    """Captions are counted by the generation service's tokenizers before a job exists: with it out of reach a
    job of captions is a 503 to retry, its id left free, while a job of pairs (counted by nobody) is accepted."""
    from services.launch import free_port

    gone = f"http://127.0.0.1:{free_port()}"
    settings = Settings(
        profile="tiny",
        redis_url=REDIS_URL,
        storage_url=str(stack["storage"]),
        gateway={"api_keys": [hash_key(KEYS["alice"])]},
        worker={"service_urls": {**stack["urls"], "generation": gone}},
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as gateway:
        refused = await gateway.put("/v1/jobs/uncounted", json={"captions": ["A dog"]}, headers=auth("alice"))
        assert refused.status_code == 503 and refused.headers["Retry-After"], refused.text
        assert refused.json()["error"]["message"].startswith("generation")
        assert (await gateway.get("/v1/jobs/uncounted", headers=auth("alice"))).status_code == 404
        accepted = await gateway.put("/v1/jobs/uncounted", json={"pairs": example_pairs()[:1]}, headers=auth("alice"))
        assert accepted.status_code == 201, accepted.text
