"""Training exports of a run's records, in the formats MLLM trainers load.

- ``llava``: the reference's record, one per kept box (``generate_final_data_new_edit.py``): a human/gpt
  conversation with the reference's question and the difference caption, ``bbox`` as the normalised string,
  ``captions1``/``captions2`` (the region labels) and ``path``; the red-boxed images at ``path + "_0.jpg"``
  and ``path + "_1.jpg"``. Written as one JSON list (``llava.json``), paths relative to it.
- ``dj``: Data-Juicer's fields, one line per accepted pair: ``caption1``, ``caption2``, ``image_path1``,
  ``image_path2`` and ``__dj__meta__`` with centre-xywh boxes (``__dj__bbox__``), ``region_caption1/2`` and
  ``bbox_difference_captions`` as parallel lists.
- ``jsonl``: spotdiff's own records, accepted and rejected, with provenance.
- ``parquet``: the same records as a table (nested scores and provenance as JSON text columns).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from PIL import Image

from spotdiff.imgdiff.boxes import to_centre
from spotdiff.imgdiff.prompts import TRAINING_QUESTION
from spotdiff.jobs.folder import RunFolder
from spotdiff.protocol import SampleRecord, SampleStatus
from spotdiff.storage import ArtifactStore

ExportFormat = Literal["llava", "dj", "jsonl", "parquet"]
FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)


def read_records(run_dir: Path) -> list[SampleRecord]:
    """The records of a run folder (a ``spotdiff run`` output or a job's folder), in the run's order."""
    return list(RunFolder(ArtifactStore(str(run_dir))).iter_records())


def write_jsonl(records: Iterable[SampleRecord], target: Path) -> Path:
    with target.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.model_dump_json() + "\n")
    return target


def _accepted(records: Iterable[SampleRecord]) -> Iterator[SampleRecord]:
    return (record for record in records if record.status is SampleStatus.ACCEPTED)


def _jpeg(store: ArtifactStore, key: str, target: Path) -> None:
    image = Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB")
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, format="JPEG", quality=95)


def export_llava(records: Iterable[SampleRecord], store: ArtifactStore, out_dir: Path) -> Path:
    target = out_dir / "llava.json"
    with target.open("w", encoding="utf-8") as handle:  # one JSON list, written an entry at a time
        handle.write("[")
        written = 0
        for record in _accepted(records):
            for number, region in enumerate(record.regions):
                path = f"llava/{record.pair_id}_{number}"
                assert region.boxed_image_source is not None and region.boxed_image_target is not None
                _jpeg(store, region.boxed_image_source, out_dir / f"{path}_0.jpg")
                _jpeg(store, region.boxed_image_target, out_dir / f"{path}_1.jpg")
                entry = {
                    "conversations": [
                        {"from": "human", "value": TRAINING_QUESTION},
                        {"from": "gpt", "value": region.difference_caption or ""},
                    ],
                    "bbox": region.box_normalised,
                    "captions1": region.label_source or "",
                    "captions2": region.label_target or "",
                    "path": path,
                }
                handle.write(("," if written else "") + "\n" + json.dumps(entry, ensure_ascii=False))
                written += 1
        handle.write("\n]\n")
    return target


def export_dj(records: Iterable[SampleRecord], store: ArtifactStore, out_dir: Path) -> Path:
    target = out_dir / "dj.jsonl"
    with target.open("w", encoding="utf-8") as handle:
        for record in _accepted(records):
            paths = []
            for side, key in (("1", record.image_source), ("2", record.image_target)):
                assert key is not None
                relative = f"dj/{record.pair_id}_{side}.jpg"
                _jpeg(store, key, out_dir / relative)
                paths.append(relative)
            line = {
                "caption1": record.source,
                "caption2": record.target,
                "image_path1": paths[0],
                "image_path2": paths[1],
                "__dj__meta__": {
                    "__dj__bbox__": [list(to_centre(region.box)) for region in record.regions],
                    "region_caption1": [region.label_source or "" for region in record.regions],
                    "region_caption2": [region.label_target or "" for region in record.regions],
                    "bbox_difference_captions": [region.difference_caption or "" for region in record.regions],
                },
            }
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return target


def export_jsonl(records: Iterable[SampleRecord], store: ArtifactStore, out_dir: Path) -> Path:
    return write_jsonl(records, out_dir / "records.jsonl")


def export_parquet(records: Iterable[SampleRecord], store: ArtifactStore, out_dir: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "pair_id": record.pair_id,
            "status": record.status.value,
            "source": record.source,
            "target": record.target,
            "source_objects": record.source_objects,
            "target_objects": record.target_objects,
            "image_source": record.image_source,
            "image_target": record.image_target,
            "width": record.width,
            "height": record.height,
            "pair_cosine": record.pair_cosine,
            "seed": record.provenance.seed,
            "regions": [
                {
                    "box": region.box.as_list(),
                    "box_normalised": region.box_normalised,
                    "source_image": region.source_image,
                    "crop_cosine": region.crop_cosine,
                    "text_match": region.text_match,
                    "label_source": region.label_source,
                    "label_target": region.label_target,
                    "label_cosine": region.label_cosine,
                    "difference_caption": region.difference_caption,
                    "boxed_image_source": region.boxed_image_source,
                    "boxed_image_target": region.boxed_image_target,
                }
                for region in record.regions
            ],
            "rejection_stage": record.rejection.stage.value if record.rejection else None,
            "rejection_reason": record.rejection.reason if record.rejection else None,
            "rejection": record.rejection.model_dump_json() if record.rejection else None,
            "provenance": record.provenance.model_dump_json(),
        }
        for record in records
    ]
    target = out_dir / "records.parquet"
    pq.write_table(pa.Table.from_pylist(rows), target)
    return target


Exporter = Callable[[Iterable[SampleRecord], ArtifactStore, Path], Path]


@dataclass(frozen=True)
class ExportKind:
    """How one format is written, and how it travels: one file as it is, or a zip of the folder (images)."""

    write: Exporter
    media_type: str
    zipped: bool


EXPORTS: dict[ExportFormat, ExportKind] = {
    "llava": ExportKind(export_llava, "application/zip", zipped=True),
    "dj": ExportKind(export_dj, "application/zip", zipped=True),
    "jsonl": ExportKind(export_jsonl, "application/jsonl", zipped=False),
    "parquet": ExportKind(export_parquet, "application/vnd.apache.parquet", zipped=False),
}


def export(run_dir: Path, export_format: ExportFormat, out_dir: Path | None = None) -> Path:
    """Write one export of the run in ``run_dir`` (default: ``run_dir/exports/<format>``) and return its file."""
    if export_format not in EXPORTS:
        raise ValueError(f"unknown export format {export_format!r}; one of {', '.join(FORMATS)}")
    target = out_dir or run_dir / "exports" / export_format
    target.mkdir(parents=True, exist_ok=True)
    return EXPORTS[export_format].write(read_records(run_dir), ArtifactStore(str(run_dir)), target)
