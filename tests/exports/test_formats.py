"""Every export of a run folder written by hand, read back field by field as its trainer reads it.

The records are chosen so that a wrong attribution shows: each image, red-boxed image, label and score is
distinct, the images are not square, one region came from image 2, one record is a surplus and one a
rejection. So an export that swapped the two sides, the two images of a region, width and height, one box
for another or exported a sample that is not one, writes something these tests can tell apart. No model is
involved: `tests/exports/test_trainers.py` exports a real run of the tiny models."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from spotdiff.exports import EXPORTS, FORMATS, ExportOptions, ExportUnavailable, export, read_records, write_jsonl
from spotdiff.exports.tables import PARQUET_SCHEMA, ROWS_PER_GROUP, _groups, dataset_card, hf_features
from spotdiff.imgdiff.prompts import MULTI_IMAGE_QUESTION, TRAINING_QUESTION
from spotdiff.protocol import (
    Box,
    CaptionPair,
    ModelRef,
    Provenance,
    Region,
    Rejection,
    SampleRecord,
    SampleStatus,
    Stage,
)
from spotdiff.runner import start_folder
from spotdiff.storage import ArtifactStore

WIDTH, HEIGHT = 64, 48
Colour = tuple[int, int, int]
COLOURS: dict[str, Colour] = {
    "two-boxes/1": (200, 30, 30),
    "two-boxes/2": (30, 30, 200),
    "two-boxes/0/1": (30, 200, 30),
    "two-boxes/0/2": (200, 200, 30),
    "two-boxes/1/1": (200, 30, 200),
    "two-boxes/1/2": (30, 200, 200),
    "one-box/1": (120, 60, 20),
    "one-box/2": (20, 60, 120),
    "one-box/0/1": (250, 150, 50),
    "one-box/0/2": (50, 150, 250),
    "surplus/1": (90, 90, 90),
    "surplus/2": (160, 160, 160),
    "surplus/0/1": (10, 100, 10),
    "surplus/0/2": (100, 10, 10),
}
PROVENANCE: dict[str, Any] = {
    "models": {
        "generation": ModelRef(id="/modèles/sdxl", revision="r1"),
        "captioning": ModelRef(id="llava-y", revision="r2"),
    },
    "settings": {"pair_filter": {"min": 0.5}, "areas": {"max_boxes": 5}},
    "profile": "tiny",
    "spotdiff_version": "9.9",
}


def png(colour: Colour, mode: str = "RGB") -> bytes:
    """A solid PNG; ``RGBA`` (opaque) for the pair whose images carry an alpha channel, as a PNG may."""
    buffer = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), colour).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def mode(pair: str) -> str:
    return "RGBA" if pair == "one-box" else "RGB"


def region(store: ArtifactStore, pair: str, number: int, **fields: object) -> Region:
    boxed = {side: store.put_image(png(COLOURS[f"{pair}/{number}/{side}"], mode(pair))) for side in (1, 2)}
    return Region.model_validate(
        {"boxed_image_source": boxed[1], "boxed_image_target": boxed[2], "source_text_scores": {}} | fields
    )


def sample(store: ArtifactStore, pair: str, status: SampleStatus, regions: list[Region], seed: int) -> SampleRecord:
    return SampleRecord(
        pair_id=pair,
        status=status,
        source=f"{pair}: a dog on the grass",
        target=f"{pair}: a cat on the grass",
        source_objects=["dog"],
        target_objects=["cat"],
        image_source=store.put_image(png(COLOURS[f"{pair}/1"], mode(pair))),
        image_target=store.put_image(png(COLOURS[f"{pair}/2"], mode(pair))),
        width=WIDTH,
        height=HEIGHT,
        pair_cosine=0.91,
        proposals=7,
        regions=regions,
        provenance=Provenance(seed=seed, **PROVENANCE),
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four records in the run's order: two accepted around a rejection, and a surplus at the end."""
    folder = tmp_path_factory.mktemp("run")
    store = ArtifactStore(str(folder))
    two = sample(
        store,
        "two-boxes",
        SampleStatus.ACCEPTED,
        [
            region(
                store,
                "two-boxes",
                0,
                box=Box(x1=4, y1=6, x2=20, y2=30),
                box_normalised="[0.06, 0.12, 0.31, 0.62]",
                source_image=1,
                crop_cosine=0.31,
                text_match=0.27,
                label_source="a brown dog",
                label_target="a grey cat",
                label_cosine=0.42,
                difference_caption="The left box holds a dog; the right one a cat.",
            ),
            region(
                store,
                "two-boxes",
                1,
                box=Box(x1=40, y1=2, x2=60, y2=12),
                box_normalised="[0.62, 0.04, 0.94, 0.25]",
                source_image=2,
                crop_cosine=0.55,
                text_match=0.21,
                label_source="a red ball",
                label_target=None,
                label_cosine=0.61,
                difference_caption="A ball on the left, a cube on the right.",
            ),
        ],
        seed=11,
    )
    one = sample(
        store,
        "one-box",
        SampleStatus.ACCEPTED,
        [
            region(
                store,
                "one-box",
                0,
                box=Box(x1=1, y1=2, x2=3, y2=5),
                box_normalised="[0.02, 0.04, 0.05, 0.10]",
                source_image=1,
                crop_cosine=0.12,
                text_match=0.34,
                label_source=None,
                label_target="ein Café",
                label_cosine=None,
                difference_caption=None,
            )
        ],
        seed=12,
    )
    surplus = sample(
        store,
        "surplus",
        SampleStatus.SURPLUS,
        [
            region(
                store,
                "surplus",
                0,
                box=Box(x1=5, y1=5, x2=9, y2=9),
                box_normalised="[0.08, 0.10, 0.14, 0.19]",
                source_image=1,
                crop_cosine=0.2,
                text_match=0.3,
                label_source="x",
                label_target="y",
                label_cosine=0.5,
                difference_caption="not a sample: its job had enough",
            )
        ],
        seed=13,
    )
    return write_run(store, [two, rejection("rejected"), one, surplus])


def rejection(pair_id: str, **provenance: Any) -> SampleRecord:
    """A pair rejected at the object stage, before any image."""
    return SampleRecord(
        pair_id=pair_id,
        status=SampleStatus.REJECTED,
        source="A dog",
        target="The dog",
        source_objects=[],
        target_objects=[],
        rejection=Rejection(stage=Stage.OBJECTS, reason="no_changed_objects", message="no object word changed"),
        provenance=Provenance(**PROVENANCE | provenance),
    )


def write_run(store: ArtifactStore, records: list[SampleRecord]) -> Path:
    """A run folder holding ``records``, in their order."""
    run = start_folder(store, [CaptionPair(id=r.pair_id, source="A dog", target="A cat") for r in records])
    for record in records:
        assert run.create_record(record)
    return Path(store.root)


def colour_at(image: Image.Image, x: int, y: int) -> Colour:
    return image.convert("RGB").getpixel((x, y))  # type: ignore[return-value]


def near(found: Colour, wanted: Colour, tolerance: int = 12) -> bool:
    """A solid colour read back from a JPEG: within a few levels of what was written."""
    return all(abs(a - b) <= tolerance for a, b in zip(found, wanted, strict=True))


def solid(path: Path, wanted: Colour) -> bool:
    """A JPEG of the stored size whose pixels are ``wanted``."""
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == (WIDTH, HEIGHT)
        return all(near(colour_at(image, x, y), wanted) for x, y in ((0, 0), (WIDTH - 1, HEIGHT - 1), (32, 24)))


SAMPLES = ["two-boxes_0", "two-boxes_1", "one-box_0"]  # every kept box of the accepted samples, in order
CAPTIONS = [
    "The left box holds a dog; the right one a cat.",
    "A ball on the left, a cube on the right.",
    "",
]


def boxed(sample_id: str, side: int) -> Colour:
    pair, number = sample_id.rsplit("_", 1)
    return COLOURS[f"{pair}/{number}/{side}"]


def test_every_format_is_listed_with_how_it_travels() -> None:
    assert set(EXPORTS) == set(FORMATS)
    assert {name: (kind.media_type, kind.zipped) for name, kind in EXPORTS.items()} == {
        name: ("application/zip", True) for name in FORMATS if name != "jsonl"
    } | {"jsonl": ("application/jsonl", False)}


def test_llava_is_one_composite_per_kept_box(run_dir: Path, tmp_path: Path) -> None:
    target = export(run_dir, "llava", tmp_path)
    assert target == tmp_path / "llava.json"
    assert json.loads(target.read_text(encoding="utf-8")) == [
        {
            "id": sample_id,
            "image": f"images/{sample_id}.jpg",
            "conversations": [
                {"from": "human", "value": f"<image>\n{TRAINING_QUESTION}"},
                {"from": "gpt", "value": caption},
            ],
        }
        for sample_id, caption in zip(SAMPLES, CAPTIONS, strict=True)
    ]
    for sample_id in SAMPLES:
        with Image.open(tmp_path / "images" / f"{sample_id}.jpg") as image:
            assert image.format == "JPEG" and image.size == (WIDTH + 20 + WIDTH, HEIGHT)
            assert near(colour_at(image, 2, 2), boxed(sample_id, 1))
            assert near(colour_at(image, WIDTH - 3, HEIGHT - 3), boxed(sample_id, 1))
            assert near(colour_at(image, WIDTH + 10, HEIGHT // 2), (0, 0, 0))
            assert near(colour_at(image, WIDTH + 22, 2), boxed(sample_id, 2))
            assert near(colour_at(image, 2 * WIDTH + 17, HEIGHT - 3), boxed(sample_id, 2))


def test_imgdiff_is_the_reference_record_with_its_two_boxed_images(run_dir: Path, tmp_path: Path) -> None:
    target = export(run_dir, "imgdiff", tmp_path)
    assert target == tmp_path / "imgdiff.json"
    labels = [("a brown dog", "a grey cat"), ("a red ball", ""), ("", "ein Café")]
    boxes = ["[0.06, 0.12, 0.31, 0.62]", "[0.62, 0.04, 0.94, 0.25]", "[0.02, 0.04, 0.05, 0.10]"]
    assert json.loads(target.read_text(encoding="utf-8")) == [
        {
            "conversations": [{"from": "human", "value": TRAINING_QUESTION}, {"from": "gpt", "value": caption}],
            "bbox": box,
            "captions1": left,
            "captions2": right,
            "path": f"imgdiff/{sample_id}",
        }
        for sample_id, caption, box, (left, right) in zip(SAMPLES, CAPTIONS, boxes, labels, strict=True)
    ]
    for sample_id in SAMPLES:
        assert solid(tmp_path / "imgdiff" / f"{sample_id}_0.jpg", boxed(sample_id, 1))
        assert solid(tmp_path / "imgdiff" / f"{sample_id}_1.jpg", boxed(sample_id, 2))


def test_llava_onevision_names_both_boxed_images_in_order(run_dir: Path, tmp_path: Path) -> None:
    target = export(run_dir, "llava_onevision", tmp_path)
    assert target == tmp_path / "llava_onevision.json"
    assert json.loads(target.read_text(encoding="utf-8")) == [
        {
            "id": sample_id,
            "image": [f"images/{sample_id}_0.jpg", f"images/{sample_id}_1.jpg"],
            "conversations": [
                {"from": "human", "value": f"<image>\n<image>\n{MULTI_IMAGE_QUESTION}"},
                {"from": "gpt", "value": caption},
            ],
        }
        for sample_id, caption in zip(SAMPLES, CAPTIONS, strict=True)
    ]
    for sample_id in SAMPLES:
        assert solid(tmp_path / "images" / f"{sample_id}_0.jpg", boxed(sample_id, 1))
        assert solid(tmp_path / "images" / f"{sample_id}_1.jpg", boxed(sample_id, 2))


def test_messages_are_json_lines_with_one_image_part_per_image(run_dir: Path, tmp_path: Path) -> None:
    target = export(run_dir, "messages", tmp_path)
    assert target == tmp_path / "messages.jsonl"
    text = target.read_text(encoding="utf-8")
    assert text.endswith("}\n")  # one JSON object per line, a newline after each
    assert [json.loads(line) for line in text.splitlines()] == [
        {
            "id": sample_id,
            "images": [f"images/{sample_id}_0.jpg", f"images/{sample_id}_1.jpg"],
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": MULTI_IMAGE_QUESTION}],
                },
                {"role": "assistant", "content": [{"type": "text", "text": caption}]},
            ],
        }
        for sample_id, caption in zip(SAMPLES, CAPTIONS, strict=True)
    ]
    for sample_id in SAMPLES:
        assert solid(tmp_path / "images" / f"{sample_id}_0.jpg", boxed(sample_id, 1))
        assert solid(tmp_path / "images" / f"{sample_id}_1.jpg", boxed(sample_id, 2))


def test_non_ascii_text_is_written_as_utf8(run_dir: Path, tmp_path: Path) -> None:
    """A label with an accent reads as itself in the file, not as a ``\\u`` escape."""
    for name in ("imgdiff", "dj", "llava_onevision"):
        text = export(run_dir, name, tmp_path / name).read_text(encoding="utf-8")
        assert ("ein Café" if name != "llava_onevision" else "A ball on the left") in text


def test_dj_has_the_original_images_and_centre_boxes(run_dir: Path, tmp_path: Path) -> None:
    target = export(run_dir, "dj", tmp_path / "dj")
    assert target == tmp_path / "dj" / "dj.jsonl"
    lines = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    images = tmp_path / "dj" / "images"
    assert lines == [
        {
            "caption1": "two-boxes: a dog on the grass",
            "caption2": "two-boxes: a cat on the grass",
            "image_path1": str(images / "two-boxes_1.jpg"),
            "image_path2": str(images / "two-boxes_2.jpg"),
            "__dj__meta__": {
                "__dj__bbox__": [[12.0, 18.0, 16.0, 24.0], [50.0, 7.0, 20.0, 10.0]],
                "region_caption1": ["a brown dog", "a red ball"],
                "region_caption2": ["a grey cat", ""],
                "bbox_difference_captions": CAPTIONS[:2],
            },
        },
        {
            "caption1": "one-box: a dog on the grass",
            "caption2": "one-box: a cat on the grass",
            "image_path1": str(images / "one-box_1.jpg"),
            "image_path2": str(images / "one-box_2.jpg"),
            "__dj__meta__": {
                "__dj__bbox__": [[2.0, 3.5, 2.0, 3.0]],
                "region_caption1": [""],
                "region_caption2": ["ein Café"],
                "bbox_difference_captions": [""],
            },
        },
    ]
    for pair in ("two-boxes", "one-box"):
        assert solid(images / f"{pair}_1.jpg", COLOURS[f"{pair}/1"])
        assert solid(images / f"{pair}_2.jpg", COLOURS[f"{pair}/2"])


def test_dj_image_paths_are_relative_to_the_image_root_named(run_dir: Path, tmp_path: Path) -> None:
    """Data-Juicer opens a path as it is, from where it runs: relative to ``image_root`` when the user names one,
    also when the export lies beside it rather than inside it."""
    inside = export(run_dir, "dj", tmp_path / "dj", ExportOptions(image_root=tmp_path))
    paths = [json.loads(line)["image_path1"] for line in inside.read_text().splitlines()]
    assert paths == ["dj/images/two-boxes_1.jpg", "dj/images/one-box_1.jpg"]
    (tmp_path / "work").mkdir()
    beside = export(run_dir, "dj", tmp_path / "out" / "dj", ExportOptions(image_root=tmp_path / "work"))
    line = json.loads(beside.read_text().splitlines()[0])
    assert line["image_path2"] == "../out/dj/images/two-boxes_2.jpg"
    assert solid(tmp_path / "work" / line["image_path2"], COLOURS["two-boxes/2"])


def test_jsonl_keeps_every_record_as_it_is(run_dir: Path, tmp_path: Path) -> None:
    target = export(run_dir, "jsonl", tmp_path)
    assert target == tmp_path / "records.jsonl"
    records = [SampleRecord.model_validate_json(line) for line in target.read_text().splitlines()]
    assert records == read_records(run_dir)
    assert [record.pair_id for record in records] == ["two-boxes", "rejected", "one-box", "surplus"]
    assert write_jsonl(records[1:2], tmp_path / "one.jsonl").read_text() == records[1].model_dump_json() + "\n"


def parquet_row(table: pa.Table, pair_id: str) -> dict:
    (row,) = [row for row in table.to_pylist() if row["pair_id"] == pair_id]
    return row


def test_parquet_has_every_record_under_the_fixed_schema(run_dir: Path, tmp_path: Path) -> None:
    target = export(run_dir, "parquet", tmp_path)
    assert target == tmp_path / "records.parquet"
    table = pq.read_table(target)
    assert table.schema.equals(PARQUET_SCHEMA) and table.schema.metadata == {b"spotdiff.schema": b"1"}
    assert table.column("pair_id").to_pylist() == ["two-boxes", "rejected", "one-box", "surplus"]
    assert table.column("status").to_pylist() == ["accepted", "rejected", "accepted", "surplus"]
    two = parquet_row(table, "two-boxes")
    provenance = json.loads(two.pop("provenance"))
    assert provenance["seed"] == 11 and provenance["models"]["generation"] == {"id": "/modèles/sdxl", "revision": "r1"}
    assert two == {
        "pair_id": "two-boxes",
        "status": "accepted",
        "source": "two-boxes: a dog on the grass",
        "target": "two-boxes: a cat on the grass",
        "source_objects": ["dog"],
        "target_objects": ["cat"],
        "image_source": {"bytes": None, "path": "images/two-boxes_1.jpg"},
        "image_target": {"bytes": None, "path": "images/two-boxes_2.jpg"},
        "width": WIDTH,
        "height": HEIGHT,
        "pair_cosine": 0.91,
        "seed": 11,
        "regions": [
            {
                "box": [4.0, 6.0, 20.0, 30.0],
                "box_normalised": "[0.06, 0.12, 0.31, 0.62]",
                "source_image": 1,
                "crop_cosine": 0.31,
                "text_match": 0.27,
                "label_source": "a brown dog",
                "label_target": "a grey cat",
                "label_cosine": 0.42,
                "difference_caption": CAPTIONS[0],
            },
            {
                "box": [40.0, 2.0, 60.0, 12.0],
                "box_normalised": "[0.62, 0.04, 0.94, 0.25]",
                "source_image": 2,
                "crop_cosine": 0.55,
                "text_match": 0.21,
                "label_source": "a red ball",
                "label_target": None,
                "label_cosine": 0.61,
                "difference_caption": CAPTIONS[1],
            },
        ],
        "rejection_stage": None,
        "rejection_reason": None,
        "rejection": None,
    }
    assert solid(tmp_path / "images" / "two-boxes_1.jpg", COLOURS["two-boxes/1"])
    assert solid(tmp_path / "images" / "two-boxes_2.jpg", COLOURS["two-boxes/2"])
    rejected = parquet_row(table, "rejected")
    assert json.loads(rejected.pop("rejection")) == {
        "stage": "objects",
        "reason": "no_changed_objects",
        "message": "no object word changed",
        "numbers": {},
    }
    assert {key: rejected[key] for key in ("image_source", "image_target", "seed", "regions", "width")} == {
        "image_source": None,
        "image_target": None,
        "seed": None,
        "regions": [],
        "width": None,
    }
    assert (rejected["rejection_stage"], rejected["rejection_reason"]) == ("objects", "no_changed_objects")
    one = parquet_row(table, "one-box")["regions"][0]
    assert (one["label_source"], one["label_cosine"], one["difference_caption"]) == (None, None, None)


def test_parquet_embeds_the_stored_bytes_when_asked(run_dir: Path, tmp_path: Path) -> None:
    target = export(run_dir, "parquet", tmp_path, ExportOptions(embed_images=True))
    row = parquet_row(pq.read_table(target), "two-boxes")
    assert row["image_source"] == {"bytes": png(COLOURS["two-boxes/1"]), "path": None}
    assert row["image_target"] == {"bytes": png(COLOURS["two-boxes/2"]), "path": None}
    assert not (tmp_path / "images").exists()


def test_parquet_writes_row_groups_of_a_fixed_size(tmp_path: Path) -> None:
    """A run of any size is written a row group at a time; the last group holds the rest."""
    write_run(ArtifactStore(str(tmp_path / "run")), [rejection(f"p{n}") for n in range(ROWS_PER_GROUP + 3)])
    metadata = pq.ParquetFile(export(tmp_path / "run", "parquet", tmp_path / "out")).metadata
    assert [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)] == [ROWS_PER_GROUP, 3]
    assert ROWS_PER_GROUP == 256
    assert [len(group) for group in _groups(iter([{}] * 5), 2)] == [2, 2, 1]
    assert list(_groups(iter([]), 2)) == []


def test_hf_rows_are_kept_boxes_with_the_original_images(run_dir: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    target = export(run_dir, "hf", tmp_path)
    assert target == tmp_path / "hf"
    loaded = datasets.load_from_disk(str(target))
    assert loaded.features == hf_features()
    assert loaded.data.schema.field("box").type == pa.list_(pa.float32(), 4)  # four numbers, always
    rows = [loaded[number] for number in range(len(loaded))]  # images decoded, as a trainer reads a row
    for row, pair in zip(rows, ("two-boxes", "two-boxes", "one-box"), strict=True):
        assert near(colour_at(row.pop("image_1"), 5, 5), COLOURS[f"{pair}/1"], 0)  # PNG: lossless
        assert near(colour_at(row.pop("image_2"), 5, 5), COLOURS[f"{pair}/2"], 0)
        assert json.loads(row.pop("provenance"))["models"]["captioning"] == {"id": "llava-y", "revision": "r2"}
    shared = {"source_objects": ["dog"], "target_objects": ["cat"], "pair_cosine": 0.91}
    two = {"pair_id": "two-boxes", "source_caption": "two-boxes: a dog on the grass"} | shared
    two |= {"target_caption": "two-boxes: a cat on the grass", "seed": 11}
    assert rows == [
        {
            "id": "two-boxes_0",
            "box": [4.0, 6.0, 20.0, 30.0],
            "box_normalised": "[0.06, 0.12, 0.31, 0.62]",
            "label_1": "a brown dog",
            "label_2": "a grey cat",
            "difference_caption": CAPTIONS[0],
            "crop_cosine": 0.31,
            "text_match": 0.27,
            "label_cosine": 0.42,
        }
        | two,
        {
            "id": "two-boxes_1",
            "box": [40.0, 2.0, 60.0, 12.0],
            "box_normalised": "[0.62, 0.04, 0.94, 0.25]",
            "label_1": "a red ball",
            "label_2": "",
            "difference_caption": CAPTIONS[1],
            "crop_cosine": 0.55,
            "text_match": 0.21,
            "label_cosine": 0.61,
        }
        | two,
        {
            "id": "one-box_0",
            "pair_id": "one-box",
            "source_caption": "one-box: a dog on the grass",
            "target_caption": "one-box: a cat on the grass",
            "box": [1.0, 2.0, 3.0, 5.0],
            "box_normalised": "[0.02, 0.04, 0.05, 0.10]",
            "label_1": "",
            "label_2": "ein Café",
            "difference_caption": "",
            "crop_cosine": 0.12,
            "text_match": 0.34,
            "label_cosine": None,
            "seed": 12,
        }
        | shared,
    ]
    assert (target / "README.md").read_text(encoding="utf-8") == dataset_card(read_records(run_dir), 3)
    assert not list(tmp_path.glob("spotdiff-hf-*"))  # the build cache went with the build


def test_the_dataset_card_says_what_made_the_rows() -> None:
    """The models of the first record that names each service, every profile, the first record's settings."""
    later = {"models": {"generation": ModelRef(id="z", revision="9")}, "profile": "reference", "settings": {"b": 1}}
    card = dataset_card([rejection("p"), rejection("q", **later)], 7)
    assert card.startswith("---\nlicense: other\ntask_categories:\n- image-text-to-text\n")
    assert "\n# Img-Diff difference samples\n\n7 samples, one per kept difference box" in card
    assert "(profile\nreference, tiny)" in card
    assert "## Models\n\n- captioning: llava-y (revision r2)\n- generation: /modèles/sdxl (revision r1)\n\n" in card
    fields = card.split("## Fields\n\n", 1)[1].split("\n\n", 1)[0].split("\n")
    assert [line.split(":", 1)[0] for line in fields] == [f"- `{name}`" for name in hf_features()]
    assert fields[2].startswith("- `image_1`: Image(") and fields[8].startswith("- `box`: List(")
    settings = json.dumps(PROVENANCE["settings"], indent=2, sort_keys=True)
    assert card.endswith(f"## Settings\n\n```json\n{settings}\n```\n")
    empty = dataset_card([], 0)
    assert "0 samples" in empty and "(profile\n-)" in empty and "## Models\n\n- (none)\n" in empty
    assert empty.endswith("```json\n{}\n```\n")


def test_the_hf_export_says_which_extra_it_needs(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if it were not installed
    with pytest.raises(
        ExportUnavailable, match=r"^the hf export needs the datasets library: pip install 'spotdiff\[hf\]'$"
    ):
        export(run_dir, "hf", tmp_path / "hf")


def test_an_export_goes_to_its_folder_and_can_be_written_again(run_dir: Path, tmp_path: Path) -> None:
    assert export(run_dir, "llava") == run_dir / "exports" / "llava" / "llava.json"
    deep = tmp_path / "a" / "b" / "c"
    first = export(run_dir, "messages", deep).read_text()
    assert export(run_dir, "messages", deep).read_text() == first
    with pytest.raises(ValueError, match=r"^unknown export format 'csv'; one of llava, imgdiff, "):
        export(run_dir, "csv", tmp_path)  # type: ignore[arg-type]


def test_images_are_jpegs_of_quality_95(run_dir: Path, tmp_path: Path) -> None:
    """Pillow's default quality (75) would blur the small regions a difference caption speaks of."""
    export(run_dir, "imgdiff", tmp_path)
    written = tmp_path / "imgdiff" / "two-boxes_0_0.jpg"
    reference = io.BytesIO()
    Image.open(io.BytesIO(png(COLOURS["two-boxes/0/1"]))).save(reference, format="JPEG", quality=95)
    with Image.open(written) as image, Image.open(reference) as expected:
        assert image.quantization == expected.quantization  # type: ignore[attr-defined]


def test_the_hf_build_cache_is_inside_the_export_and_goes(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dataset is built in a temporary folder of the export (same disk, never the user's HF cache), removed
    once the dataset is saved."""
    datasets = pytest.importorskip("datasets")
    user_cache = tmp_path / "user-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", user_cache)
    made: list[Path] = []
    real = tempfile.TemporaryDirectory

    def recorded(*args: object, **kwargs: object) -> tempfile.TemporaryDirectory[str]:
        folder = real(*args, **kwargs)  # type: ignore[call-overload]
        made.append(Path(folder.name))
        return folder

    monkeypatch.setattr(tempfile, "TemporaryDirectory", recorded)
    export(run_dir, "hf", tmp_path / "out")
    (cache,) = made
    assert cache.parent == tmp_path / "out" and cache.name.startswith("spotdiff-hf-") and not cache.exists()
    assert not user_cache.exists() or not any(user_cache.iterdir())
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["hf"]


MISSING = {  # what each export says is missing, for image 1 and image 2
    "llava": "red-boxed image {side} for images/two-boxes_0.jpg",
    "imgdiff": "red-boxed image {side} for imgdiff/two-boxes_0",
    "dj": "image {side} for two-boxes",
    "hf": "image {side} for two-boxes_0",
}


@pytest.mark.parametrize("side", [1, 2])
@pytest.mark.parametrize("name", sorted(MISSING))
def test_a_record_without_its_images_is_refused_by_name(name: str, side: int, tmp_path: Path) -> None:
    """An accepted record that names no image (a store edited by hand) stops the export with a clear error."""
    pytest.importorskip("datasets")
    store = ArtifactStore(str(tmp_path / "run"))
    good = sample(
        store,
        "two-boxes",
        SampleStatus.ACCEPTED,
        [
            region(
                store,
                "two-boxes",
                0,
                box=Box(x1=1, y1=1, x2=5, y2=5),
                box_normalised="[0.02, 0.02, 0.08, 0.10]",
                source_image=1,
                crop_cosine=0.1,
                text_match=0.2,
            )
        ],
        seed=1,
    )
    image, boxed = ("image_source", "boxed_image_source") if side == 1 else ("image_target", "boxed_image_target")
    broken = good.model_copy(update={image: None, "regions": [good.regions[0].model_copy(update={boxed: None})]})
    missing = re.escape(MISSING[name].format(side=side))
    with pytest.raises(ValueError, match=f"^an accepted sample's record names no {missing}$"):
        export(write_run(store, [broken]), name, tmp_path / "out")  # type: ignore[arg-type]


def test_exports_are_the_same_under_an_ascii_locale(run_dir: Path, tmp_path: Path) -> None:
    """A container's locale is often plain C (ASCII): every export is written in UTF-8 all the same, byte for
    byte what it is here."""
    pytest.importorskip("datasets")
    names = ["llava", "imgdiff", "llava_onevision", "messages", "dj", "jsonl", "hf"]
    script = (
        "import locale, sys\n"
        "from pathlib import Path\n"
        "from spotdiff.exports import export\n"
        "print(locale.getpreferredencoding(False))\n"
        "for name in sys.argv[2:]:\n"
        "    print(export(Path(sys.argv[1]), name))\n"
    )
    ascii_env = {key: value for key, value in os.environ.items() if not key.startswith(("LC_", "LANG"))}
    ascii_env |= {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("exports"))
    done = subprocess.run(
        [sys.executable, "-c", script, str(copy), *names], env=ascii_env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    encoding, *written = done.stdout.split("\n")[:-1]
    assert encoding == "ANSI_X3.4-1968"  # the test means something: this locale cannot write 'é'
    texts = [
        Path(path) / "README.md" if name == "hf" else Path(path) for name, path in zip(names, written, strict=True)
    ]
    there = [text.read_bytes() for text in texts]
    for name in names:
        export(copy, name)  # type: ignore[arg-type]  # the same folders, written again here
    assert [text.read_bytes() for text in texts] == there
