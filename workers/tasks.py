"""The pair task: run one caption pair through the pipeline, idempotently by (job, pair).

The record is written to the store before the task returns (and so before it is acknowledged); a
redelivered task finds it and only makes sure it is counted. Services that stay unavailable are retried with
exponential backoff and jitter; when the retries run out the pair's record says so.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from spotdiff.clients import ServiceClients
from spotdiff.pipeline import PairFailed, PairPipeline
from spotdiff.protocol import CaptionPair, SampleRecord
from spotdiff.settings import PipelineSettings, Settings
from workers.celery_app import PAIR_TASK, app
from workers.jobstore import JobStore

log = logging.getLogger("spotdiff.worker")
_settings: Settings | None = None
_store: JobStore | None = None


def settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings()
    return _settings


def job_store() -> JobStore:
    global _store
    if _store is None:
        _store = JobStore.from_url(settings().redis_url, settings().storage_url)
    return _store


def job_settings(overrides: dict[str, Any]) -> Settings:
    """The worker's settings with this job's pipeline overrides applied (validated)."""
    base = settings()
    pipeline = PipelineSettings.model_validate({**base.pipeline.model_dump(), **overrides})
    return base.model_copy(update={"pipeline": pipeline})


async def run_pair(job_id: str, pair: CaptionPair, config: Settings) -> SampleRecord:
    token = config.worker.service_token.get_secret_value() if config.worker.service_token else None
    clients = ServiceClients.over_http(config.worker.service_urls, token=token)
    try:
        pipeline = await PairPipeline.connect(clients, job_store().artifacts(job_id), config)
        return await pipeline.run(pair)
    finally:
        await clients.aclose()


@app.task(name=PAIR_TASK, bind=True)
def process_pair(self: Any, job_id: str, pair_json: str) -> str:
    store = job_store()
    pair = CaptionPair.model_validate_json(pair_json)
    if store.has_record(job_id, pair.id):
        store.count(job_id, store.record(job_id, pair.id))
        return "already done"
    manifest = store.manifest(job_id)
    if manifest is None or store.is_cancelled(job_id):
        return "cancelled"
    config = job_settings(manifest.request.settings)
    try:
        record = asyncio.run(run_pair(job_id, pair, config))
    except PairFailed as failed:
        retries = self.request.retries
        if retries < config.worker.max_retries:
            delay = config.worker.retry_backoff_s * 2**retries * (1 + random.random() / 2)
            log.warning("pair %s/%s: %s; retry %d in %.1fs", job_id, pair.id, failed, retries + 1, delay)
            raise self.retry(countdown=delay, max_retries=config.worker.max_retries) from failed
        record = failed.record
    store.finish_pair(job_id, record)
    return record.status.value
