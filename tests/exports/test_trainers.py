"""Each training export reads back with the library its users load it with."""

import io
import json
import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pytest_asyncio
from PIL import Image

from spotdiff.cli import main
from spotdiff.clients import ServiceClients
from spotdiff.exports import ExportOptions, ExportUnavailable, export, read_records
from spotdiff.imgdiff.prompts import TRAINING_QUESTION
from spotdiff.protocol import CaptionPair, Provenance, Rejection, SampleRecord, SampleStatus, Stage
from spotdiff.runner import run_embedded, start_folder
from spotdiff.settings import Settings
from spotdiff.storage import ArtifactStore

EXAMPLES = Path(__file__).parents[2] / "examples" / "caption_pairs.jsonl"
BBOX = re.compile(r"^\[\d\.\d\d, \d\.\d\d, \d\.\d\d, \d\.\d\d\]$")


@pytest_asyncio.fixture(scope="module")
async def run_dir(clients: ServiceClients, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    pairs = out / "pairs.jsonl"
    # the examples plus one pair that is rejected, so exports see both kinds
    pairs.write_text(EXAMPLES.read_text() + '{"id": "same-words", "source": "A dog", "target": "The dog"}\n')
    await run_embedded(pairs, out, settings, progress=False, clients=clients)
    return out


def kept_boxes(run_dir: Path) -> int:
    return sum(len(r.regions) for r in read_records(run_dir) if r.status is SampleStatus.ACCEPTED)


def alternating(turns: list[dict], key: str, roles: tuple[str, str]) -> bool:
    return [turn[key] for turn in turns] == [roles[i % 2] for i in range(len(turns))]


def test_llava_trains_on_the_composite_image(run_dir: Path) -> None:
    """As LLaVA's LazySupervisedDataset reads a record: ``image`` opened from ``--image_folder`` (the export
    folder) when the key is there, one ``<image>`` token, at the start of the human turn, turns human / gpt."""
    target = export(run_dir, "llava")
    entries = json.loads(target.read_text())
    assert len(entries) == kept_boxes(run_dir) > 0
    assert len({entry["id"] for entry in entries}) == len(entries)
    for entry in entries:
        assert set(entry) == {"id", "image", "conversations"}
        human, gpt = entry["conversations"]
        assert alternating(entry["conversations"], "from", ("human", "gpt"))
        assert human["value"] == f"<image>\n{TRAINING_QUESTION}" and human["value"].count("<image>") == 1
        assert gpt["value"]
        with Image.open(target.parent / entry["image"]) as image:  # left | 20 px black bar | right
            assert image.convert("RGB").size == (128 + 20 + 128, 128)
            assert image.convert("RGB").getpixel((138, 64)) == (0, 0, 0)


def test_imgdiff_export_is_the_reference_record(run_dir: Path) -> None:
    target = export(run_dir, "imgdiff")
    entries = json.loads(target.read_text())
    assert len(entries) == kept_boxes(run_dir) > 0
    for entry in entries:
        assert set(entry) == {"conversations", "bbox", "captions1", "captions2", "path"}
        human, gpt = entry["conversations"]
        assert human == {"from": "human", "value": TRAINING_QUESTION}
        assert gpt["from"] == "gpt" and gpt["value"]
        assert BBOX.match(entry["bbox"])
        for side in ("_0.jpg", "_1.jpg"):
            with Image.open(target.parent / (entry["path"] + side)) as image:
                assert image.format == "JPEG" and image.size == (128, 128)


def test_llava_onevision_has_one_image_token_per_image(run_dir: Path) -> None:
    target = export(run_dir, "llava_onevision")
    entries = json.loads(target.read_text())
    assert len(entries) == kept_boxes(run_dir) > 0
    for entry in entries:
        assert isinstance(entry["image"], list) and len(entry["image"]) == 2
        assert alternating(entry["conversations"], "from", ("human", "gpt"))
        tokens = sum(turn["value"].count("<image>") for turn in entry["conversations"])
        assert tokens == len(entry["image"])
        for path in entry["image"]:
            with Image.open(target.parent / path) as image:
                assert image.size == (128, 128)


def test_chat_messages_have_one_image_part_per_image(run_dir: Path) -> None:
    """TRL's vision SFT and HF chat templates: ``messages`` with ``{"type": "image"}`` parts, in order, one per
    entry of ``images``; roles user / assistant."""
    target = export(run_dir, "messages")
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(lines) == kept_boxes(run_dir) > 0
    for line in lines:
        assert alternating(line["messages"], "role", ("user", "assistant"))
        parts = [part for message in line["messages"] for part in message["content"]]
        assert sum(part["type"] == "image" for part in parts) == len(line["images"]) == 2
        assert parts[-1]["type"] == "text" and parts[-1]["text"]
        for path in line["images"]:
            with Image.open(target.parent / path) as image:
                image.verify()


def test_hf_export_opens_with_datasets_images_decoded(run_dir: Path) -> None:
    datasets = pytest.importorskip("datasets")
    target = export(run_dir, "hf")
    loaded = datasets.load_from_disk(str(target))
    assert len(loaded) == kept_boxes(run_dir) > 0
    assert isinstance(loaded.features["image_1"], datasets.Image)
    row = loaded[0]
    assert row["image_1"].size == (128, 128) and row["image_2"].size == (128, 128)
    assert len(row["box"]) == 4 and row["difference_caption"] and row["label_1"]
    card = (target / "README.md").read_text()
    assert "## Fields" in card and "image_1" in card and "tiny" in card


def test_dj_export_has_parallel_lists_and_centre_boxes(run_dir: Path, tmp_path: Path) -> None:
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
        # Data-Juicer opens the paths as they are, from wherever it runs: absolute by default
        assert Path(line["image_path1"]).is_absolute() and Path(line["image_path1"]).is_file()
        assert Path(line["image_path2"]).is_file()
        assert line["caption1"] != line["caption2"]
    rooted = export(run_dir, "dj", tmp_path / "dj", ExportOptions(image_root=tmp_path))
    first = json.loads(rooted.read_text().splitlines()[0])
    assert not Path(first["image_path1"]).is_absolute() and (tmp_path / first["image_path1"]).is_file()


def test_jsonl_export_keeps_every_record_with_provenance(run_dir: Path) -> None:
    target = export(run_dir, "jsonl")
    records = [SampleRecord.model_validate_json(line) for line in target.read_text().splitlines()]
    assert len(records) == len(read_records(run_dir))
    rejected = [r for r in records if r.status is SampleStatus.REJECTED]
    assert rejected and all(r.rejection is not None for r in rejected)


@pytest.fixture
def rejected_only(tmp_path: Path) -> Path:
    """A second run whose only record is a rejection: every column that holds data in the first is empty here."""
    folder = tmp_path / "rejected"
    store = ArtifactStore(str(folder))
    pair = CaptionPair(id="lonely", source="A dog", target="The dog")
    run = start_folder(store, [pair])
    rejection = Rejection(stage=Stage.OBJECTS, reason="no_changed_objects", message="no object word changed")
    run.create_record(
        SampleRecord(
            pair_id="lonely",
            status=SampleStatus.REJECTED,
            source=pair.source,
            target=pair.target,
            source_objects=[],
            target_objects=[],
            rejection=rejection,
            provenance=Provenance(seed=None, profile="tiny", spotdiff_version="0"),
        )
    )
    return folder


def test_parquet_export_reads_back_with_pyarrow(run_dir: Path) -> None:
    target = export(run_dir, "parquet")
    table = pq.read_table(target)
    records = read_records(run_dir)
    assert table.num_rows == len(records)
    assert table.schema.metadata[b"spotdiff.schema"] == b"1"
    rows = table.to_pylist()
    by_id = {row["pair_id"]: row for row in rows}
    for record in records:
        row = by_id[record.pair_id]
        assert row["status"] == record.status.value and len(row["regions"]) == len(record.regions)
        assert json.loads(row["provenance"])["seed"] == record.provenance.seed
        if record.image_source:
            with Image.open(target.parent / row["image_source"]["path"]) as image:
                assert image.size == (128, 128)
    assert by_id["same-words"]["rejection_reason"] == "no_changed_objects"


def test_two_runs_parquet_files_concatenate(run_dir: Path, rejected_only: Path, tmp_path: Path) -> None:
    first = export(run_dir, "parquet", tmp_path / "a")
    second = export(rejected_only, "parquet", tmp_path / "b")
    combined = pa.concat_tables([pq.read_table(first), pq.read_table(second)])
    assert combined.num_rows == len(read_records(run_dir)) + 1
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset(
        "parquet", data_files=[str(first), str(second)], split="train", cache_dir=str(tmp_path / "cache")
    )
    assert len(loaded) == combined.num_rows


def test_parquet_can_embed_the_images(run_dir: Path, tmp_path: Path) -> None:
    target = export(run_dir, "parquet", tmp_path / "embedded", ExportOptions(embed_images=True))
    rows = pq.read_table(target).to_pylist()
    with_images = [row for row in rows if row["image_source"]]
    assert with_images and all(row["image_source"]["bytes"] for row in with_images)
    assert not (tmp_path / "embedded" / "images").exists()
    with Image.open(io.BytesIO(with_images[0]["image_source"]["bytes"])) as image:
        assert image.size == (128, 128)


def test_the_cli_exports(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(run_dir), "--format", "llava", "--out", str(tmp_path)]) == 0
    assert Path(capsys.readouterr().out.strip()) == tmp_path / "llava.json"
    entries = json.loads((tmp_path / "llava.json").read_text())
    assert entries and all((tmp_path / entry["image"]).exists() for entry in entries)
    assert (
        main(["export", str(run_dir), "--format", "dj", "--out", str(tmp_path / "dj"), "--image-root", str(tmp_path)])
        == 0
    )
    line = json.loads((tmp_path / "dj" / "dj.jsonl").read_text().splitlines()[0])
    assert line["image_path1"].startswith("dj/")


def test_the_hf_export_says_which_extra_it_needs(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if it were not installed
    with pytest.raises(ExportUnavailable, match=r"spotdiff\[hf\]"):
        export(run_dir, "hf", tmp_path / "hf")
