"""A Python client for the gateway's jobs API, sync (`Client`) and async (`AsyncClient`):

    from spotdiff.client import Client

    with Client("http://localhost:8000", api_key="...") as client:
        job = client.submit(pairs=[{"id": "dog-cat", "source": "A dog on the grass", "target": "A cat on the grass"}])
        status = job.wait()                    # a progress bar on stderr; progress=False for none
        for record in job.samples():           # SampleRecord, every page
            ...
        job.download("llava", "out/")          # the export, streamed to a file

Submitting is a PUT under an id the client makes (or yours), so a retry can never submit twice; 429 and 503
answers are retried after their ``Retry-After``. Errors are `GatewayError` with the gateway's error code.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from pydantic import BaseModel, ValidationError

from spotdiff.exports import ExportFormat
from spotdiff.protocol import SampleRecord
from spotdiff.protocol.errors import ErrorResponse
from spotdiff.protocol.jobs import JobCreated, JobList, JobState, JobStatus

RETRIED = frozenset({429, 503})
FINAL = frozenset({JobState.DONE, JobState.CANCELLED})
PairLike = Mapping[str, Any] | BaseModel


class GatewayError(Exception):
    """A non-2xx answer: its status, the gateway's stable error ``code`` and its message."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details


class JobEvent(BaseModel):
    """One server-sent event of a job: its id (to resume after), type and fields."""

    id: str
    type: str
    data: dict[str, Any]


def _error(response: httpx.Response) -> GatewayError:
    try:
        body = ErrorResponse.model_validate_json(response.content).error
        return GatewayError(response.status_code, body.code, body.message, body.details)
    except ValidationError:
        return GatewayError(response.status_code, "http_error", response.text[:200] or response.reason_phrase)


def _delay(response: httpx.Response, attempt: int) -> float:
    """The server's Retry-After when it gives one, else a doubling backoff."""
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return float(min(0.5 * 2**attempt, 30.0))


def _job_body(
    pairs: Iterable[PairLike], settings: Mapping[str, Any] | None, target_accepted: int | None, extra: Mapping[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "pairs": [pair.model_dump(exclude_none=True) if isinstance(pair, BaseModel) else dict(pair) for pair in pairs],
        **extra,
    }
    if settings:
        body["settings"] = dict(settings)
    if target_accepted is not None:
        body["target_accepted"] = target_accepted
    return body


def _file_name(response: httpx.Response, export_format: str) -> str:
    found = re.search(r'filename="([^"/\\]+)"', response.headers.get("Content-Disposition", ""))
    return found.group(1) if found else f"{export_format}.zip"


def _target(to: str | Path, response: httpx.Response, export_format: str) -> Path:
    path = Path(to)
    if path.is_dir() or str(to).endswith("/"):
        path.mkdir(parents=True, exist_ok=True)
        return path / _file_name(response, export_format)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class EventParser:
    """text/event-stream lines into `JobEvent`s; comments (keep-alives) are skipped."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}

    def line(self, line: str) -> JobEvent | None:
        if line.startswith(":"):
            return None
        if line == "":
            fields, self.fields = self.fields, {}
            if "data" not in fields:
                return None
            return JobEvent(
                id=fields.get("id", ""), type=fields.get("event", "message"), data=json.loads(fields["data"])
            )
        name, _, value = line.partition(":")
        self.fields[name] = value.removeprefix(" ")
        return None


class _Progress:
    """A tqdm bar over a job's finished pairs (its total grows with rounds)."""

    def __init__(self, job_id: str, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(desc=f"job {job_id[:12]}", unit="pair", total=0, leave=True)

    def show(self, status: JobStatus) -> None:
        if self.bar is None:
            return
        self.bar.total = status.total
        self.bar.n = status.done
        self.bar.set_postfix(accepted=status.accepted, state=status.state.value, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Client:
    """The gateway's jobs API over HTTP, synchronously. ``transport``: any httpx transport (a test's ASGI app)."""

    def __init__(
        self,
        url: str = "http://localhost:8000",
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout, transport=transport)
        self.retries = retries

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, retried on 429 and 503 after their Retry-After; any other error raises `GatewayError`."""
        for attempt in range(self.retries + 1):
            response = self.http.request(method, path, **kwargs)
            if response.status_code not in RETRIED or attempt == self.retries:
                break
            time.sleep(_delay(response, attempt))
        if response.is_error:
            raise _error(response)
        return response

    def submit(
        self,
        pairs: Iterable[PairLike],
        *,
        settings: Mapping[str, Any] | None = None,
        target_accepted: int | None = None,
        job_id: str | None = None,
        **extra: Any,
    ) -> Job:
        """Submit caption pairs as a job (the same ``job_id`` and body again is the same job)."""
        job_id = job_id or uuid.uuid4().hex
        body = _job_body(pairs, settings, target_accepted, extra)
        created = JobCreated.model_validate_json(self.request("PUT", f"/v1/jobs/{job_id}", json=body).content)
        return Job(self, created.id)

    def job(self, job_id: str) -> Job:
        return Job(self, job_id)

    def jobs(self, states: Iterable[JobState | str] = (), page_size: int = 100) -> Iterator[JobStatus]:
        """Your jobs, newest first (those in ``states`` only, when given)."""
        offset: int | None = 0
        while offset is not None:
            params = [("state", str(state)) for state in states] + [("offset", offset), ("limit", page_size)]
            page = JobList.model_validate_json(self.request("GET", "/v1/jobs", params=params).content)
            yield from page.items
            offset = page.next_offset


class Job:
    """One job of a `Client`."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client, self.id = client, job_id

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def status(self) -> JobStatus:
        return JobStatus.model_validate_json(self.client.request("GET", f"/v1/jobs/{self.id}").content)

    def wait(self, *, progress: bool = True, poll_s: float = 1.0, timeout: float | None = None) -> JobStatus:
        """Block until the job is done or cancelled (TimeoutError after ``timeout`` seconds); returns its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _Progress(self.id, progress)
        try:
            while True:
                status = self.status()
                bar.show(status)
                if status.state in FINAL:
                    return status
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.id} is {status.state.value} after {timeout} s")
                time.sleep(poll_s)
        finally:
            bar.close()

    def events(self, last_event_id: str | None = None) -> Iterator[JobEvent]:
        """The job's events until it ends; a dropped connection resumes after the last event seen."""
        while True:
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_event_id} if last_event_id else {})}
            parser = EventParser()
            try:
                with self.client.http.stream("GET", f"/v1/jobs/{self.id}/events", headers=headers) as response:
                    if response.is_error:
                        response.read()
                        raise _error(response)
                    for line in response.iter_lines():
                        event = parser.line(line)
                        if event is None:
                            continue
                        last_event_id = event.id or last_event_id
                        yield event
                        if event.type in FINAL:
                            return
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout):
                pass  # the connection dropped: resume below
            if self.status().state in FINAL:
                return

    def samples(self, page_size: int = 100) -> Iterator[SampleRecord]:
        """Every record of the job (accepted, rejected and why), a page at a time."""
        offset: int | None = 0
        while offset is not None:
            params = {"offset": offset, "limit": page_size}
            page = self.client.request("GET", f"/v1/jobs/{self.id}/samples", params=params).json()
            yield from (SampleRecord.model_validate(item) for item in page["items"])
            offset = page["next_offset"]

    def download(self, export_format: ExportFormat, to: str | Path = ".") -> Path:
        """One export, streamed to ``to`` (a file, or a folder for the gateway's file name); returns the file."""
        for attempt in range(self.client.retries + 1):
            with self.client.http.stream(
                "GET", f"/v1/jobs/{self.id}/export", params={"format": export_format}
            ) as response:
                if response.status_code in RETRIED and attempt < self.client.retries:
                    time.sleep(_delay(response, attempt))
                    continue
                if response.is_error:
                    response.read()
                    raise _error(response)
                target = _target(to, response, export_format)
                with target.open("wb") as file:
                    for chunk in response.iter_bytes():
                        file.write(chunk)
                return target
        raise AssertionError("unreachable: the last attempt returns or raises")

    def cancel(self) -> JobStatus:
        """Cancel what is queued or running (a finished job: `GatewayError` 409 ``job_finished``)."""
        return JobStatus.model_validate_json(self.client.request("DELETE", f"/v1/jobs/{self.id}").content)


class AsyncClient:
    """`Client` for asyncio: the same calls, awaited (``events`` and ``samples`` are async iterators)."""

    def __init__(
        self,
        url: str = "http://localhost:8000",
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, transport=transport)
        self.retries = retries

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.retries + 1):
            response = await self.http.request(method, path, **kwargs)
            if response.status_code not in RETRIED or attempt == self.retries:
                break
            await asyncio.sleep(_delay(response, attempt))
        if response.is_error:
            raise _error(response)
        return response

    async def submit(
        self,
        pairs: Iterable[PairLike],
        *,
        settings: Mapping[str, Any] | None = None,
        target_accepted: int | None = None,
        job_id: str | None = None,
        **extra: Any,
    ) -> AsyncJob:
        job_id = job_id or uuid.uuid4().hex
        body = _job_body(pairs, settings, target_accepted, extra)
        response = await self.request("PUT", f"/v1/jobs/{job_id}", json=body)
        return AsyncJob(self, JobCreated.model_validate_json(response.content).id)

    def job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, job_id)

    async def jobs(self, states: Iterable[JobState | str] = (), page_size: int = 100) -> AsyncIterator[JobStatus]:
        offset: int | None = 0
        while offset is not None:
            params = [("state", str(state)) for state in states] + [("offset", offset), ("limit", page_size)]
            page = JobList.model_validate_json((await self.request("GET", "/v1/jobs", params=params)).content)
            for item in page.items:
                yield item
            offset = page.next_offset


class AsyncJob:
    """One job of an `AsyncClient`."""

    def __init__(self, client: AsyncClient, job_id: str) -> None:
        self.client, self.id = client, job_id

    def __repr__(self) -> str:
        return f"AsyncJob({self.id!r})"

    async def status(self) -> JobStatus:
        return JobStatus.model_validate_json((await self.client.request("GET", f"/v1/jobs/{self.id}")).content)

    async def wait(self, *, progress: bool = True, poll_s: float = 1.0, timeout: float | None = None) -> JobStatus:
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _Progress(self.id, progress)
        try:
            while True:
                status = await self.status()
                bar.show(status)
                if status.state in FINAL:
                    return status
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.id} is {status.state.value} after {timeout} s")
                await asyncio.sleep(poll_s)
        finally:
            bar.close()

    async def events(self, last_event_id: str | None = None) -> AsyncIterator[JobEvent]:
        while True:
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_event_id} if last_event_id else {})}
            parser = EventParser()
            try:
                async with self.client.http.stream("GET", f"/v1/jobs/{self.id}/events", headers=headers) as response:
                    if response.is_error:
                        await response.aread()
                        raise _error(response)
                    async for line in response.aiter_lines():
                        event = parser.line(line)
                        if event is None:
                            continue
                        last_event_id = event.id or last_event_id
                        yield event
                        if event.type in FINAL:
                            return
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout):
                pass
            if (await self.status()).state in FINAL:
                return

    async def samples(self, page_size: int = 100) -> AsyncIterator[SampleRecord]:
        offset: int | None = 0
        while offset is not None:
            params = {"offset": offset, "limit": page_size}
            page = (await self.client.request("GET", f"/v1/jobs/{self.id}/samples", params=params)).json()
            for item in page["items"]:
                yield SampleRecord.model_validate(item)
            offset = page["next_offset"]

    async def download(self, export_format: ExportFormat, to: str | Path = ".") -> Path:
        for attempt in range(self.client.retries + 1):
            async with self.client.http.stream(
                "GET", f"/v1/jobs/{self.id}/export", params={"format": export_format}
            ) as response:
                if response.status_code in RETRIED and attempt < self.client.retries:
                    await asyncio.sleep(_delay(response, attempt))
                    continue
                if response.is_error:
                    await response.aread()
                    raise _error(response)
                target = _target(to, response, export_format)
                with target.open("wb") as file:
                    async for chunk in response.aiter_bytes():
                        file.write(chunk)
                return target
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def cancel(self) -> JobStatus:
        return JobStatus.model_validate_json((await self.client.request("DELETE", f"/v1/jobs/{self.id}")).content)
