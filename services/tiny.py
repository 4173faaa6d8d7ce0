"""Build the whole set of tiny random-weight checkpoints (SDXL, CLIP, BLIP, SAM, LLaVA-NeXT, Qwen2-VL, Llama) in
one folder.

Tests and the demo profile point the services at these folders and load them with each family's real
loading code. The set is written next to its destination and moved into place before the `COMPLETE`
marker is written, so a crashed or concurrent build never leaves a set that `is_complete` accepts.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import import_module
from pathlib import Path

FORMAT_VERSION = "spotdiff-tiny-v4"  # bump when any builder's output changes
MARKER_FILE = "COMPLETE"

SAM_CHECKPOINT_FILE = "sam_tiny.pth"  # what services.regions.tiny.build writes

# name -> "module:function" whose `function(out_dir, seed)` writes `out_dir / name`. Imported only to build,
# so checking a
# set (`is_complete`) costs no torch import.
BUILDERS = {
    "sdxl": "services.generation.tiny:build",
    "clip": "services.similarity.tiny:build",
    "blip": "services.similarity.tiny:build_blip",
    "sam": "services.regions.tiny:build",
    "llava_next": "services.captioning.tiny:build",
    "qwen2_vl": "services.captioning.tiny:build_qwen2_vl",
    "llama": "services.rewriting.tiny:build",
}


def checkpoint_paths(out_dir: Path) -> dict[str, Path]:
    """Where each checkpoint of a set lives: the folders, and for SAM the `.pth` file its registry takes."""
    paths = {name: out_dir / name for name in BUILDERS}
    paths["sam"] = out_dir / "sam" / SAM_CHECKPOINT_FILE
    return paths


def is_complete(out_dir: Path) -> bool:
    """True if `out_dir` holds a finished set written by this version of the builders."""
    marker = out_dir / MARKER_FILE
    try:
        version = marker.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return False
    return version == FORMAT_VERSION and all(path.exists() for path in checkpoint_paths(out_dir).values())


def build_all(out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Build every checkpoint into `out_dir/<name>` (`BUILDERS`) and mark the set complete.

    Returns the path to load each checkpoint from (see `checkpoint_paths`). Rebuilding over an existing
    set first removes its marker, so readers never mix old and new parts.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER_FILE).unlink(missing_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        for name, builder in BUILDERS.items():
            module, function = builder.split(":")
            getattr(import_module(module), function)(staging / name, seed)
        for name in BUILDERS:
            target = out_dir / name
            if target.exists():
                shutil.rmtree(target)
            (staging / name).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # Write the marker atomically too: a reader sees no marker or the whole version string.
    marker_tmp = out_dir / f".{MARKER_FILE}.tmp"
    marker_tmp.write_text(FORMAT_VERSION + "\n", encoding="utf-8")
    marker_tmp.replace(out_dir / MARKER_FILE)
    return checkpoint_paths(out_dir)
