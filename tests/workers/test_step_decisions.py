"""The distributed path decides as the embedded one: the worker's own step runs each step of a pair over the
fake services of `tests/pipeline/test_decisions.py`, the pair's state going through the job's folder as JSON
between the steps, as it does between tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

from spotdiff.pipeline import FIRST_STEP, PairRun, next_step
from spotdiff.protocol import CaptionPair, SampleRecord, SampleStatus, Stage
from tests.pipeline.test_decisions import B, D, clients_for, scene
from workers.tasks import WorkerProcess


@pytest.mark.parametrize(("semantics", "kept"), [("orig", B), ("dj", D)])
def test_the_worker_step_keeps_the_box_the_scores_pick(
    semantics: str, kept: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOTDIFF_REDIS_URL", "redis://127.0.0.1:6379/9")  # not used: no step here touches Redis
    monkeypatch.setenv("SPOTDIFF_STORAGE_URL", str(tmp_path))
    monkeypatch.setenv("SPOTDIFF_PROFILE", "reference")
    monkeypatch.setenv("SPOTDIFF_PIPELINE__PROPOSALS", "amg")
    monkeypatch.setenv("SPOTDIFF_PIPELINE__SEMANTICS", semantics)
    worker = WorkerProcess()
    worker.clients = clients_for(scene(semantics))
    folder = worker.store.folder("job")
    run = PairRun(pair=CaptionPair(id="p", source="A dog on the grass", target="A cat on the grass"))
    step: Stage | None = FIRST_STEP
    record: SampleRecord | None = None
    while step is not None and record is None:
        record = worker.within(worker.step("job", run, step, worker.settings), 30)
        if record is None:
            folder.save_step(run, step)  # what the next task starts from
            run = folder.load_step("p", step)
            step = next_step(step)
    assert record is not None and record.status is SampleStatus.ACCEPTED, record
    assert [region.box for region in record.regions] == [kept]
    assert record.provenance.models["similarity"].id == "fake-similarity"
