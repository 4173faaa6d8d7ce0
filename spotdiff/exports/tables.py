"""Table exports: ``parquet`` with one fixed, versioned Arrow schema (two runs' files concatenate, whatever
their data), and ``hf``, a Hugging Face ``datasets`` dataset on disk with an explicit ``Features`` schema and a
dataset card."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import spotdiff
from spotdiff.exports.conversations import boxes
from spotdiff.exports.images import IMAGES, copy_jpeg, stored
from spotdiff.exports.options import ExportOptions, ExportUnavailable
from spotdiff.exports.text import ENCODING
from spotdiff.protocol import Region, SampleRecord
from spotdiff.storage import ArtifactStore

PARQUET_SCHEMA_VERSION = "1"
# An image as Hugging Face's Image feature stores it: the bytes, or a path relative to the export folder.
IMAGE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
REGION = pa.struct(
    [
        pa.field("box", pa.list_(pa.float64(), 4)),
        pa.field("box_normalised", pa.string()),
        pa.field("source_image", pa.int8()),
        pa.field("crop_cosine", pa.float64()),
        pa.field("text_match", pa.float64()),
        pa.field("label_source", pa.string()),
        pa.field("label_target", pa.string()),
        pa.field("label_cosine", pa.float64()),
        pa.field("difference_caption", pa.string()),
    ]
)
PARQUET_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("target", pa.string(), nullable=False),
        pa.field("source_objects", pa.list_(pa.string())),
        pa.field("target_objects", pa.list_(pa.string())),
        pa.field("image_source", IMAGE),
        pa.field("image_target", IMAGE),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("pair_cosine", pa.float64()),
        pa.field("seed", pa.int64()),
        pa.field("regions", pa.list_(REGION)),
        pa.field("rejection_stage", pa.string()),
        pa.field("rejection_reason", pa.string()),
        pa.field("rejection", pa.string()),  # JSON
        pa.field("provenance", pa.string(), nullable=False),  # JSON
    ],
    metadata={"spotdiff.schema": PARQUET_SCHEMA_VERSION},
)
ROWS_PER_GROUP = 256
HF_ROWS_PER_BATCH = 32  # rows held before they are written: two full-size images each


def _image(store: ArtifactStore, key: str | None, out_dir: Path, relative: str, embed: bool) -> dict[str, Any] | None:
    if key is None:
        return None
    if embed:
        return {"bytes": store.get_bytes(key)}  # the field left out is null
    return {"path": copy_jpeg(store, key, out_dir, relative)}


def _row(record: SampleRecord, store: ArtifactStore, out_dir: Path, embed: bool) -> dict[str, Any]:
    return {
        "pair_id": record.pair_id,
        "status": record.status.value,
        "source": record.source,
        "target": record.target,
        "source_objects": record.source_objects,
        "target_objects": record.target_objects,
        "image_source": _image(store, record.image_source, out_dir, f"{IMAGES}/{record.pair_id}_1.jpg", embed),
        "image_target": _image(store, record.image_target, out_dir, f"{IMAGES}/{record.pair_id}_2.jpg", embed),
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
            }
            for region in record.regions
        ],
        "rejection_stage": record.rejection.stage.value if record.rejection else None,
        "rejection_reason": record.rejection.reason if record.rejection else None,
        "rejection": record.rejection.model_dump_json() if record.rejection else None,
        "provenance": record.provenance.model_dump_json(),
    }


def _groups(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    group: list[dict[str, Any]] = []
    for row in rows:
        group.append(row)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def export_parquet(
    records: Iterable[SampleRecord], store: ArtifactStore, out_dir: Path, options: ExportOptions
) -> Path:
    """Every record, accepted or not, under `PARQUET_SCHEMA`, written a row group at a time."""
    target = out_dir / "records.parquet"
    rows = (_row(record, store, out_dir, options.embed_images) for record in records)
    with pq.ParquetWriter(target, PARQUET_SCHEMA) as writer:
        for group in _groups(rows, ROWS_PER_GROUP):
            writer.write_table(pa.Table.from_pylist(group, schema=PARQUET_SCHEMA))
    return target


def hf_features() -> Any:
    """The ``hf`` export's schema: one row per kept box of an accepted sample."""
    from datasets import Features, Image, Sequence, Value

    return Features(
        {
            "id": Value("string"),
            "pair_id": Value("string"),
            "image_1": Image(),
            "image_2": Image(),
            "source_caption": Value("string"),
            "target_caption": Value("string"),
            "source_objects": Sequence(Value("string")),
            "target_objects": Sequence(Value("string")),
            "box": Sequence(Value("float32"), length=4),
            "box_normalised": Value("string"),
            "label_1": Value("string"),
            "label_2": Value("string"),
            "difference_caption": Value("string"),
            "pair_cosine": Value("float64"),
            "crop_cosine": Value("float64"),
            "text_match": Value("float64"),
            "label_cosine": Value("float64"),
            "seed": Value("int64"),
            "provenance": Value("string"),
        }
    )


HfSample = tuple[str, SampleRecord, Region, str, str]  # sample id, record, box, the keys of its two images


def _hf_samples(records: Iterable[SampleRecord]) -> list[HfSample]:
    """Every kept box with its images' keys, found before the build (an error inside it is datasets' own)."""
    return [
        (
            sample_id,
            record,
            region,
            stored(record.image_source, f"image 1 for {sample_id}"),
            stored(record.image_target, f"image 2 for {sample_id}"),
        )
        for sample_id, record, region in boxes(records)
    ]


def _hf_rows(samples: list[HfSample], store: ArtifactStore) -> Iterator[dict[str, Any]]:
    for sample_id, record, region, image_1, image_2 in samples:
        yield {
            "id": sample_id,
            "pair_id": record.pair_id,
            "image_1": {"bytes": store.get_bytes(image_1)},
            "image_2": {"bytes": store.get_bytes(image_2)},
            "source_caption": record.source,
            "target_caption": record.target,
            "source_objects": record.source_objects,
            "target_objects": record.target_objects,
            "box": region.box.as_list(),
            "box_normalised": region.box_normalised,
            "label_1": region.label_source or "",
            "label_2": region.label_target or "",
            "difference_caption": region.difference_caption or "",
            "pair_cosine": record.pair_cosine,
            "crop_cosine": region.crop_cosine,
            "text_match": region.text_match,
            "label_cosine": region.label_cosine,
            "seed": record.provenance.seed,
            "provenance": record.provenance.model_dump_json(),
        }


def export_hf(records: Iterable[SampleRecord], store: ArtifactStore, out_dir: Path, options: ExportOptions) -> Path:
    """``datasets.load_from_disk(<out>/hf)`` opens it offline, images decoded; its README.md is the card."""
    try:
        from datasets import Dataset
    except ImportError as exc:
        raise ExportUnavailable("the hf export needs the datasets library: pip install 'spotdiff[hf]'") from exc

    listed = list(records)  # the card names the models of these records; the rows are generated lazily
    target = out_dir / "hf"
    with tempfile.TemporaryDirectory(prefix="spotdiff-hf-", dir=out_dir) as cache:  # not the user's HF cache
        dataset = Dataset.from_generator(
            _hf_rows,
            gen_kwargs={"samples": _hf_samples(listed), "store": store},
            features=hf_features(),
            cache_dir=cache,
            writer_batch_size=HF_ROWS_PER_BATCH,  # pragma: no mutate (memory held while writing, not content)
        )
        dataset.save_to_disk(str(target))
        rows = len(dataset)
    (target / "README.md").write_text(dataset_card(listed, rows), encoding=ENCODING)
    return target


def dataset_card(records: list[SampleRecord], rows: int) -> str:
    """The dataset card: what a row holds, which models and settings made it, and the models' licences."""
    models: dict[str, str] = {}
    profiles = sorted({record.provenance.profile for record in records})
    for record in records:
        for service, ref in record.provenance.models.items():
            models.setdefault(service, f"{ref.id} (revision {ref.revision})")
    fields = "\n".join(f"- `{name}`: {feature}" for name, feature in hf_features().items())
    listed = "\n".join(f"- {service}: {model}" for service, model in sorted(models.items())) or "- (none)"
    settings = records[0].provenance.settings if records else {}
    return f"""---
license: other
task_categories:
- image-text-to-text
tags:
- img-diff
- spotdiff
---
# Img-Diff difference samples

{rows} samples, one per kept difference box, synthesised by spotdiff {spotdiff.__version__} (profile
{", ".join(profiles) or "-"}) after Img-Diff (Jiao et al., CVPR 2025): an image pair that differs in one object,
the box where it differs, a label of the region in each image and a difference caption.

Open it with `datasets.load_from_disk(path)`; `image_1` and `image_2` decode to PIL images.

## Fields

{fields}

## Models

{listed}

The licence of this data follows from the licences of the models that made it (SDXL: CreativeML Open RAIL++-M;
LLaVA-NeXT: the Llama 2 community licence; CLIP, BLIP, segment-anything: their own); check them before use.
A profile of `tiny` means random-weight models: such data proves plumbing, not quality.

## Settings

```json
{json.dumps(settings, indent=2, sort_keys=True)}
```
"""
