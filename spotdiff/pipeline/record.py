"""A pair's record, built from its state whatever happened to it, and the model ids it names: the kernel's
answer for the embedded run and for a worker alike."""

from __future__ import annotations

import asyncio
from typing import Any

import spotdiff
from spotdiff.clients import ServiceClients
from spotdiff.pipeline.state import PairRun
from spotdiff.protocol import ModelRef, Provenance, Rejection, SampleRecord, SampleStatus
from spotdiff.settings import Settings


async def service_models(clients: ServiceClients) -> dict[str, ModelRef]:
    """The model each service reports (`/v1/info`), by service name: what every record names."""
    infos = await asyncio.gather(*(client.info() for client in clients.pipeline()))
    return {info.service: ModelRef(id=info.model_id, revision=info.revision) for info in infos}


def provenance(run: PairRun, settings: Settings, models: dict[str, ModelRef]) -> Provenance:
    recorded: dict[str, Any] = {"pipeline": settings.pipeline.model_dump()}
    if run.params is not None:
        recorded["generation"] = run.params.model_dump()
    return Provenance(
        seed=run.seed,
        models=models,
        settings=recorded,
        profile=settings.profile,
        spotdiff_version=spotdiff.__version__,
        rewrite=run.pair.rewrite,
        warnings=run.warnings,
    )


def pair_record(
    run: PairRun, rejection: Rejection | None, settings: Settings, models: dict[str, ModelRef]
) -> SampleRecord:
    """The record of a pair that ended: accepted with its regions, or rejected (or failed) with the reason."""
    pair = run.pair
    width, height = run.size if run.size is not None else (None, None)
    regions = [] if rejection else run.regions  # pragma: no mutate (equivalent: made last, so never with a rejection)
    return SampleRecord(
        pair_id=pair.id,
        status=SampleStatus.REJECTED if rejection else SampleStatus.ACCEPTED,
        source=pair.source,
        target=pair.target,
        source_objects=run.source_objects,
        target_objects=run.target_objects,
        image_source=run.image_keys[0] if run.image_keys else None,
        image_target=run.image_keys[1] if run.image_keys else None,
        width=width,
        height=height,
        pair_cosine=run.pair_cosine,
        proposals=run.proposals,
        regions=regions,
        rejection=rejection,
        provenance=provenance(run, settings, models),
        timings=run.timings,
    )
