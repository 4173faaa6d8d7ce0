"""``dj``: the fields Data-Juicer's Img-Diff operators read and write, one line per accepted pair: ``caption1``,
``caption2``, ``image_path1``, ``image_path2``, and ``__dj__meta__`` with centre-xywh boxes (``__dj__bbox__``),
``region_caption1/2`` and ``bbox_difference_captions`` as parallel lists. Data-Juicer opens image paths as they
are, so they are absolute, or relative to the ``image_root`` the user names (the folder they run it from)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from spotdiff.exports.images import IMAGES, copy_jpeg, stored
from spotdiff.exports.options import ExportOptions
from spotdiff.exports.text import write_json_lines
from spotdiff.imgdiff.boxes import to_centre
from spotdiff.protocol import SampleRecord, SampleStatus
from spotdiff.storage import ArtifactStore


def export_dj(records: Iterable[SampleRecord], store: ArtifactStore, out_dir: Path, options: ExportOptions) -> Path:
    def named(relative: str) -> str:
        written = (out_dir / relative).resolve()
        if options.image_root is None:
            return str(written)
        return os.path.relpath(written, options.image_root.resolve())

    def lines() -> Iterator[dict[str, Any]]:
        for record in records:
            if record.status is not SampleStatus.ACCEPTED:
                continue
            paths = []
            for side, key in (("1", record.image_source), ("2", record.image_target)):
                image = stored(key, f"image {side} for {record.pair_id}")
                paths.append(named(copy_jpeg(store, image, out_dir, f"{IMAGES}/{record.pair_id}_{side}.jpg")))
            yield {
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

    return write_json_lines(out_dir / "dj.jsonl", lines())
