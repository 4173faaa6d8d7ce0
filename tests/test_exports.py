"""Each training export reads back with the library its users load it with."""

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import pytest_asyncio
from PIL import Image

from spotdiff.cli import main
from spotdiff.clients import ServiceClients
from spotdiff.exports import export, read_records
from spotdiff.imgdiff.prompts import TRAINING_QUESTION
from spotdiff.protocol import SampleRecord, SampleStatus
from spotdiff.runner import run_embedded
from spotdiff.settings import Settings

EXAMPLES = Path(__file__).parent.parent / "examples" / "caption_pairs.jsonl"
BBOX = re.compile(r"^\[\d\.\d\d, \d\.\d\d, \d\.\d\d, \d\.\d\d\]$")


@pytest_asyncio.fixture(scope="module")
async def run_dir(clients: ServiceClients, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    pairs = out / "pairs.jsonl"
    # the examples plus one pair that is rejected, so exports see both kinds
    pairs.write_text(EXAMPLES.read_text() + '{"id": "same-words", "source": "A dog", "target": "The dog"}\n')
    await run_embedded(pairs, out, settings, progress=False, clients=clients)
    return out


def test_llava_export_is_the_reference_record(run_dir: Path) -> None:
    records = read_records(run_dir)
    target = export(run_dir, "llava")
    entries = json.loads(target.read_text())
    kept = [r for r in records if r.status is SampleStatus.ACCEPTED]
    assert len(entries) == sum(len(r.regions) for r in kept) > 0
    for entry in entries:
        assert set(entry) == {"conversations", "bbox", "captions1", "captions2", "path"}
        human, gpt = entry["conversations"]
        assert human == {"from": "human", "value": TRAINING_QUESTION}
        assert gpt["from"] == "gpt" and gpt["value"]
        assert BBOX.match(entry["bbox"])
        for side in ("_0.jpg", "_1.jpg"):
            with Image.open(target.parent / (entry["path"] + side)) as image:
                assert image.format == "JPEG" and image.size == (128, 128)


def test_dj_export_has_parallel_lists_and_centre_boxes(run_dir: Path) -> None:
    target = export(run_dir, "dj")
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines
    for line in lines:
        meta = line["__dj__meta__"]
        count = len(meta["__dj__bbox__"])
        assert count > 0
        assert (
            len(meta["region_caption1"])
            == len(meta["region_caption2"])
            == len(meta["bbox_difference_captions"])
            == count
        )
        cx, cy, w, h = meta["__dj__bbox__"][0]
        assert cx - w / 2 >= 0 and cx + w / 2 <= 128 and cy - h / 2 >= 0 and cy + h / 2 <= 128 and w > 0 and h > 0
        assert (target.parent / line["image_path1"]).exists() and (target.parent / line["image_path2"]).exists()
        assert line["caption1"] != line["caption2"]


def test_jsonl_export_keeps_every_record_with_provenance(run_dir: Path) -> None:
    target = export(run_dir, "jsonl")
    records = [SampleRecord.model_validate_json(line) for line in target.read_text().splitlines()]
    assert len(records) == len(read_records(run_dir))
    rejected = [r for r in records if r.status is SampleStatus.REJECTED]
    assert rejected and all(r.rejection is not None for r in rejected)


def test_parquet_export_reads_back_with_pyarrow(run_dir: Path) -> None:
    table = pq.read_table(export(run_dir, "parquet"))
    records = read_records(run_dir)
    assert table.num_rows == len(records)
    rows = table.to_pylist()
    by_id = {row["pair_id"]: row for row in rows}
    for record in records:
        row = by_id[record.pair_id]
        assert row["status"] == record.status.value and len(row["regions"]) == len(record.regions)
        assert json.loads(row["provenance"])["seed"] == record.provenance.seed
    assert by_id["same-words"]["rejection_reason"] == "no_changed_objects"


def test_the_cli_exports(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(run_dir), "--format", "llava", "--out", str(tmp_path)]) == 0
    assert Path(capsys.readouterr().out.strip()) == tmp_path / "llava.json"
    entries = json.loads((tmp_path / "llava.json").read_text())
    assert all((tmp_path / f"{entry['path']}_0.jpg").exists() for entry in entries)
