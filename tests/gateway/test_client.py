"""spotdiff.client against the gateway: a real gateway process for the sync client, the app in this process
for the async one, and answers chosen per call (httpx's mock transport) for retries and resuming."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.deps import hash_key
from spotdiff import client as client_module
from spotdiff.client import AsyncClient, Client, GatewayError
from spotdiff.settings import Settings

from .conftest import KEYS, REDIS_URL

EXAMPLES = Path(__file__).parents[2] / "examples" / "caption_pairs.jsonl"


def pairs(count: int) -> list[dict]:
    return [json.loads(line) for line in EXAMPLES.read_text().splitlines()[:count]]


def test_a_job_from_submit_to_export(gateway_url: str, tmp_path: Path) -> None:
    with Client(gateway_url, api_key=KEYS["alice"]) as client:
        job = client.submit(pairs(3), job_id="client-job-1")
        status = job.wait(progress=False, poll_s=0.3, timeout=180)
        assert status.state == "done" and status.done == 3
        records = list(job.samples(page_size=2))
        assert [record.pair_id for record in records] == [pair["id"] for pair in pairs(3)]
        events = list(job.events())
        assert events[0].type == "created" and events[0].data["total"] == 3 and events[-1].type == "done"
        assert [event.type for event in job.events(last_event_id=events[0].id)] == [e.type for e in events[1:]]
        path = job.download("llava", tmp_path)
        archive = zipfile.ZipFile(path)
        entries = json.loads(archive.read("llava.json"))
        assert len(entries) == status.accepted and all(entry["image"] in archive.namelist() for entry in entries)
        assert job.id in {listed.id for listed in client.jobs(states=["done"])}
        again = client.submit(pairs(3), job_id="client-job-1")  # the same body again: the same job
        assert again.id == job.id and again.status().done == 3
        with pytest.raises(GatewayError) as conflict:
            client.submit(pairs(2), job_id="client-job-1")
        assert conflict.value.status == 409
        with pytest.raises(GatewayError) as finished:
            job.cancel()
        assert (finished.value.status, finished.value.code) == (409, "job_finished")
    with Client(gateway_url, api_key="wrong") as stranger, pytest.raises(GatewayError) as denied:
        stranger.job(job.id).status()
    assert denied.value.status == 401


async def test_the_async_client_in_process(stack: dict, tmp_path: Path) -> None:
    settings = Settings(
        profile="tiny",
        redis_url=REDIS_URL,
        storage_url=str(stack["storage"]),
        gateway={"api_keys": [hash_key(KEYS["bob"])]},
        worker={"service_urls": stack["urls"]},
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with AsyncClient("http://gateway", api_key=KEYS["bob"], transport=transport) as client:
        job = await client.submit(pairs(2))
        status = await job.wait(progress=False, poll_s=0.3, timeout=180)
        assert status.done == 2
        assert len([record async for record in job.samples()]) == 2
        assert [event.type async for event in job.events()][-1] == "done"
        path = await job.download("jsonl", tmp_path / "records.jsonl")
        assert len(path.read_text().splitlines()) == 2
        assert job.id in {listed.id async for listed in client.jobs()}


def test_busy_answers_are_retried_after_their_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "2"}, json={"error": {"code": "busy", "message": "."}})
        if len(calls) == 2:
            return httpx.Response(503, json={"error": {"code": "not_ready", "message": "."}})
        return httpx.Response(201, json={"id": "j", "state": "queued", "total": 1})

    with Client("http://gateway", transport=httpx.MockTransport(answer)) as client:
        job = client.submit([{"id": "a", "source": "A dog", "target": "A cat"}], job_id="j")
    assert job.id == "j" and slept == [2.0, 1.0]  # the server's delay, then the client's backoff
    assert calls == ["PUT /v1/jobs/j"] * 3  # one id for every attempt: a retry cannot submit twice


def test_the_last_busy_answer_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module.time, "sleep", lambda seconds: None)
    busy = httpx.MockTransport(
        lambda request: httpx.Response(429, json={"error": {"code": "too_many_jobs", "message": "32 in flight"}})
    )
    with Client("http://gateway", transport=busy, retries=2) as client, pytest.raises(GatewayError) as error:
        client.job("j").status()
    assert (error.value.status, error.value.code, error.value.message) == (429, "too_many_jobs", "32 in flight")


class DroppedAfter(httpx.SyncByteStream):
    """A stream that sends its bytes, then loses the connection."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def __iter__(self) -> Iterator[bytes]:
        yield self.content
        raise httpx.ReadError("connection reset")


def test_events_resume_after_the_last_event_when_the_connection_drops() -> None:
    seen_ids: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            seen_ids.append(request.headers.get("Last-Event-ID"))
            if len(seen_ids) == 1:
                first = b': ping\r\n\r\nid: 1-0\r\nevent: created\r\ndata: {"type": "created", "total": 2}\r\n\r\n'
                return httpx.Response(200, stream=DroppedAfter(first))
            rest = b'id: 2-0\nevent: pair\ndata: {"type": "pair"}\n\nid: 3-0\nevent: done\ndata: {"type": "done"}\n\n'
            return httpx.Response(200, content=rest)
        return httpx.Response(
            200,
            json={
                "id": "j",
                "state": "running",
                "total": 2,
                "done": 1,
                "accepted": 1,
                "rejected": 0,
                "funnel": {},
                "created": 0.0,
                "updated": 0.0,
            },
        )

    with Client("http://gateway", transport=httpx.MockTransport(answer)) as client:
        events = list(client.job("j").events())
    assert [event.id for event in events] == ["1-0", "2-0", "3-0"] and events[0].data["total"] == 2
    assert seen_ids == [None, "1-0"]
