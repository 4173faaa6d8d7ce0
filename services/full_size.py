"""Every reference model at its real size with seeded random weights, laid out as `spotdiff models fetch` lays
out the real ones (`spotdiff/weights/reference.json`): the same folders and files, so the reference profile and
the README's settings run against it unchanged. It proves the real shapes, formats, memory and code paths; it says
nothing about quality. The two Vicuna language models keep their full width and fewer layers.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import import_module
from pathlib import Path

from spotdiff.weights import load_manifest

FORMAT_VERSION = "spotdiff-full-size-v1"
MARKER_FILE = "COMPLETE"

# manifest source name -> "module:function" whose `function(out_dir, seed)` writes that source's folder
BUILDERS = {
    "sdxl-base": "services.generation.full_size:build",
    "clip-vit-b-32-openai": "services.similarity.full_size:build_clip",
    "blip-itm-large-coco": "services.similarity.full_size:build_blip",
    "sam-vit-h": "services.regions.full_size:build",
    "llava-v1.6-vicuna-7b": "services.captioning.full_size:build",
    "vicuna-7b-v1.5": "services.rewriting.full_size:build",
}


def is_complete(models_dir: Path) -> bool:
    try:
        return (models_dir / MARKER_FILE).read_text(encoding="utf-8").strip() == FORMAT_VERSION
    except (FileNotFoundError, NotADirectoryError):
        return False


def build_all(models_dir: Path, seed: int = 0, only: tuple[str, ...] = ()) -> dict[str, Path]:
    """Build every source (or ``only`` those) into ``models_dir/<its path>``; each folder is written beside its
    place and moved in, and the marker comes last, so a crashed build is never taken for a finished one."""
    manifest = load_manifest("reference")
    chosen = [source for source in manifest.sources if not only or source.name in only]
    unknown = set(only) - {source.name for source in manifest.sources}
    if unknown:
        raise LookupError(f"no reference source named {', '.join(sorted(unknown))}")
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / MARKER_FILE).unlink(missing_ok=True)
    written: dict[str, Path] = {}
    for source in chosen:
        target = models_dir / source.path
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=models_dir))
        try:
            module, function = BUILDERS[source.name].split(":")
            getattr(import_module(module), function)(staging, seed)
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            staging.chmod(0o755)  # mkdtemp's 0700 would hide it from a service running as another user
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        written[source.name] = target
    if len(chosen) == len(manifest.sources):
        (models_dir / MARKER_FILE).write_text(FORMAT_VERSION + "\n", encoding="utf-8")
    return written
