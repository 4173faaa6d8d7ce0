"""The embedded run end to end on the bundled examples, and on bad input."""

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from spotdiff.clients import ServiceClients
from spotdiff.protocol import SampleRecord, SampleStatus
from spotdiff.report import funnel
from spotdiff.runner import run_embedded
from spotdiff.settings import Settings
from tests.test_report import assert_self_contained

EXAMPLES = Path(__file__).parent.parent / "examples" / "caption_pairs.jsonl"


async def test_examples_run_end_to_end(clients: ServiceClients, settings: Settings, tmp_path: Path) -> None:
    summary = await run_embedded(EXAMPLES, tmp_path, settings, progress=False, clients=clients)
    lines = (tmp_path / "samples.jsonl").read_text().splitlines()
    records = [SampleRecord.model_validate_json(line) for line in lines]
    assert len(records) == summary.pairs == len(EXAMPLES.read_text().splitlines()) >= 8
    assert {record.pair_id for record in records} == {
        json.loads(line)["id"] for line in EXAMPLES.read_text().splitlines()
    }
    accepted = [record for record in records if record.status is SampleStatus.ACCEPTED]
    assert accepted and summary.accepted == len(accepted)
    for record in accepted:
        assert record.provenance.seed is not None and set(record.provenance.models) == {
            "generation",
            "similarity",
            "regions",
            "captioning",
        }
        keys = [record.image_source, record.image_target]
        keys += [key for region in record.regions for key in (region.boxed_image_source, region.boxed_image_target)]
        for key in keys:
            assert key is not None
            with Image.open(io.BytesIO((tmp_path / key).read_bytes())) as image:
                assert image.size == (record.width, record.height)
        for region in record.regions:
            assert region.label_source and region.label_target and region.difference_caption
            assert set(region.source_text_scores) == set(record.source_objects)
            assert set(region.target_text_scores) == set(record.target_objects)
            assert region.box.x2 <= record.width and region.box.y2 <= record.height
    taught = next(record for record in records if record.pair_id == "teddy-ball")
    assert (taught.source_objects, taught.target_objects) == (["teddy bear"], ["football"])  # given objects win
    gallery = (tmp_path / "gallery.html").read_text()
    assert "random-weight models" in gallery and all(record.pair_id in gallery for record in records)
    report = (tmp_path / "report.html").read_text()
    tags = assert_self_contained(report)
    assert all(record.pair_id in report for record in records)
    assert len(tags.named("rect")) == len(funnel(records))


async def test_bad_lines_are_reported_and_the_rest_run(
    clients: ServiceClients, settings: Settings, tmp_path: Path
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "\n".join(
            [
                '{"id": "good", "source": "A dog on the grass", "target": "A cat on the grass", "seed": 1}',
                '{"id": "corrupt", "source": ',
                '{"id": "empty", "source": "", "target": "A cat on the grass"}',
                '{"id": "same", "source": "A dog on the grass", "target": "A dog on the grass"}',
                '{"id": "no-object", "source": "A dog on the grass", "target": "The dog on a grass"}',
            ]
        )
    )
    out = tmp_path / "out"
    summary = await run_embedded(pairs, out, settings, progress=False, clients=clients)
    assert [error.line for error in summary.input_errors] == [2, 3, 4]
    errors = [json.loads(line) for line in (out / "input_errors.jsonl").read_text().splitlines()]
    assert [error["line"] for error in errors] == [2, 3, 4]
    records = {
        r.pair_id: r for r in map(SampleRecord.model_validate_json, (out / "samples.jsonl").read_text().splitlines())
    }
    assert set(records) == {"good", "no-object"}
    assert records["good"].status is SampleStatus.ACCEPTED
    rejected = records["no-object"]
    assert rejected.rejection is not None and rejected.rejection.reason == "no_changed_objects"


async def test_a_strict_threshold_rejects_with_the_numbers(
    clients: ServiceClients, settings: Settings, tmp_path: Path
) -> None:
    strict = settings.model_copy(update={"pipeline": settings.pipeline.model_copy(update={"pair_cosine_max": 0.5})})
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"id": "p", "source": "A dog on the grass", "target": "A cat on the grass", "seed": 1}\n')
    await run_embedded(pairs, tmp_path / "out", strict, progress=False, clients=clients)
    record = SampleRecord.model_validate_json((tmp_path / "out" / "samples.jsonl").read_text())
    assert record.status is SampleStatus.REJECTED and record.rejection is not None
    assert (record.rejection.stage.value, record.rejection.reason) == ("pair_filter", "pair_too_similar")
    assert record.rejection.numbers["pair_cosine"] >= 0.5 and record.image_source is not None


async def test_scores_split_over_small_requests_decide_the_same(
    clients: ServiceClients, settings: Settings, tmp_path: Path
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"id": "p", "source": "A dog on the grass", "target": "A cat on the grass", "seed": 3}\n')
    small = settings.model_copy(
        update={"pipeline": settings.pipeline.model_copy(update={"cosine_pairs_per_request": 2})}
    )
    results = []
    for index, config in enumerate((settings, small)):
        await run_embedded(pairs, tmp_path / str(index), config, progress=False, clients=clients)
        results.append(SampleRecord.model_validate_json((tmp_path / str(index) / "samples.jsonl").read_text()))
    assert results[0].status is SampleStatus.ACCEPTED
    assert [r.box for r in results[0].regions] == [r.box for r in results[1].regions]
    assert results[0].pair_cosine == results[1].pair_cosine


@pytest.mark.parametrize("mode", ["prior", "prior_sam"])
async def test_weight_free_proposals_run_end_to_end(
    clients: ServiceClients, settings: Settings, tmp_path: Path, mode: str
) -> None:
    config = settings.model_copy(update={"pipeline": settings.pipeline.model_copy(update={"proposals": mode})})
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"id": "p", "source": "A dog on the grass", "target": "A cat on the grass", "seed": 3}\n')
    await run_embedded(pairs, tmp_path / "out", config, progress=False, clients=clients)
    record = SampleRecord.model_validate_json((tmp_path / "out" / "samples.jsonl").read_text())
    assert record.proposals is not None and record.proposals > 0
    assert record.status is SampleStatus.ACCEPTED, record.rejection
    assert all(region.box.x2 <= 128 and region.box.y2 <= 128 for region in record.regions)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [({"label_cosine_max": -2.0}, "labels_alike"), ({"label_match_min": 2.0}, "label_does_not_match_crop")],
)
async def test_each_label_filter_rejects_with_its_reason(
    clients: ServiceClients, settings: Settings, tmp_path: Path, overrides: dict, reason: str
) -> None:
    config = settings.model_copy(update={"pipeline": settings.pipeline.model_copy(update=overrides)})
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"id": "p", "source": "A dog on the grass", "target": "A cat on the grass", "seed": 3}\n')
    await run_embedded(pairs, tmp_path / "out", config, progress=False, clients=clients)
    record = SampleRecord.model_validate_json((tmp_path / "out" / "samples.jsonl").read_text())
    assert record.rejection is not None
    assert (record.rejection.stage.value, record.rejection.reason) == ("region_labels", "labels_filtered")
    assert set(record.rejection.numbers["reasons"]) == {reason}
