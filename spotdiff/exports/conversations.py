"""Conversation exports, one sample per kept box, in the layouts trainers load as they are.

- ``llava``: LLaVA-1.5's ``LazySupervisedDataset`` (haotian-liu/LLaVA ``llava/train/train.py``): a JSON list of
  ``{id, image, conversations}``, ``image`` relative to ``--image_folder`` (the export folder), the human turn
  starting with ``<image>\\n``. The image is the reference's composite: left image with its red box, a 20 px
  black bar, right image with its red box, which is what the reference's question describes.
- ``imgdiff``: the reference's own record (``generate_final_data_new_edit.py``): ``path`` with the two
  red-boxed JPEGs at ``path + "_0.jpg"`` / ``"_1.jpg"``, the string ``bbox``, ``captions1`` / ``captions2``; for
  the released Img-Diff dataset's tools.
- ``llava_onevision``: the multi-image ShareGPT form of LLaVA-NeXT / LLaVA-OneVision's training data:
  ``image`` a list ``[left, right]`` and one ``<image>`` per image in the human turn.
- ``messages``: the chat form HF chat templates and TRL's vision SFT consume: ``messages`` with image content
  parts, one per entry of ``images`` (paths relative to the export folder), JSON lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from spotdiff.exports.images import IMAGES, boxed_pair, composite
from spotdiff.exports.options import ExportOptions
from spotdiff.exports.text import write_json_lines, write_json_list
from spotdiff.imgdiff.prompts import MULTI_IMAGE_QUESTION, TRAINING_QUESTION
from spotdiff.protocol import Region, SampleRecord, SampleStatus
from spotdiff.storage import ArtifactStore

IMAGE_TOKEN = "<image>"


def boxes(records: Iterable[SampleRecord]) -> Iterator[tuple[str, SampleRecord, Region]]:
    """Every kept box of every accepted sample, with its sample id ``<pair>_<k>``."""
    for record in records:
        if record.status is SampleStatus.ACCEPTED:
            for number, region in enumerate(record.regions):
                yield f"{record.pair_id}_{number}", record, region


def sharegpt(sample_id: str, image: str | list[str], question: str, region: Region) -> dict[str, Any]:
    """A LLaVA-style record: the human turn starts with one ``<image>`` line per image, the answer is the box's
    difference caption."""
    tokens = "".join(f"{IMAGE_TOKEN}\n" for _ in ([image] if isinstance(image, str) else image))
    return {
        "id": sample_id,
        "image": image,
        "conversations": [
            {"from": "human", "value": tokens + question},
            {"from": "gpt", "value": region.difference_caption or ""},
        ],
    }


def export_llava(records: Iterable[SampleRecord], store: ArtifactStore, out_dir: Path, options: ExportOptions) -> Path:
    entries = (
        sharegpt(sample_id, composite(store, region, out_dir, f"{IMAGES}/{sample_id}.jpg"), TRAINING_QUESTION, region)
        for sample_id, _, region in boxes(records)
    )
    return write_json_list(out_dir / "llava.json", entries)


def export_imgdiff(
    records: Iterable[SampleRecord], store: ArtifactStore, out_dir: Path, options: ExportOptions
) -> Path:
    def entries() -> Iterator[dict[str, Any]]:
        for sample_id, _, region in boxes(records):
            path = f"imgdiff/{sample_id}"
            boxed_pair(store, region, out_dir, path)
            yield {
                "conversations": [
                    {"from": "human", "value": TRAINING_QUESTION},
                    {"from": "gpt", "value": region.difference_caption or ""},
                ],
                "bbox": region.box_normalised,
                "captions1": region.label_source or "",
                "captions2": region.label_target or "",
                "path": path,
            }

    return write_json_list(out_dir / "imgdiff.json", entries())


def export_llava_onevision(
    records: Iterable[SampleRecord], store: ArtifactStore, out_dir: Path, options: ExportOptions
) -> Path:
    entries = (
        sharegpt(
            sample_id, list(boxed_pair(store, region, out_dir, f"{IMAGES}/{sample_id}")), MULTI_IMAGE_QUESTION, region
        )
        for sample_id, _, region in boxes(records)
    )
    return write_json_list(out_dir / "llava_onevision.json", entries)


def export_messages(
    records: Iterable[SampleRecord], store: ArtifactStore, out_dir: Path, options: ExportOptions
) -> Path:
    def lines() -> Iterator[dict[str, Any]]:
        for sample_id, _, region in boxes(records):
            left, right = boxed_pair(store, region, out_dir, f"{IMAGES}/{sample_id}")
            yield {
                "id": sample_id,
                "images": [left, right],
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image"},
                            {"type": "image"},
                            {"type": "text", "text": MULTI_IMAGE_QUESTION},
                        ],
                    },
                    {"role": "assistant", "content": [{"type": "text", "text": region.difference_caption or ""}]},
                ],
            }

    return write_json_lines(out_dir / "messages.jsonl", lines())
