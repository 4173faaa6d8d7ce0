"""Training exports of a run's records, in the formats MLLM trainers load as they are (the README's export
section names the trainer of each):

- ``llava``: LLaVA-1.5's single-image conversations over the reference's composite picture (`conversations`);
- ``imgdiff``: the reference's own record, for the released Img-Diff dataset's tools;
- ``llava_onevision``: multi-image ShareGPT conversations (LLaVA-NeXT / LLaVA-OneVision);
- ``messages``: chat messages with image parts (HF chat templates: Qwen2-VL, InternVL; TRL's vision SFT);
- ``hf``: a Hugging Face ``datasets`` dataset on disk, images in it, with a dataset card (`tables`);
- ``parquet``: every record under one fixed, versioned Arrow schema (`tables`);
- ``dj``: Data-Juicer's Img-Diff fields (`dj`);
- ``jsonl``: spotdiff's own records, accepted and rejected, with provenance.

Every exporter reads the records one at a time and writes as it goes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from spotdiff.exports.conversations import export_imgdiff, export_llava, export_llava_onevision, export_messages
from spotdiff.exports.dj import export_dj
from spotdiff.exports.options import ExportOptions, ExportUnavailable
from spotdiff.exports.tables import export_hf, export_parquet
from spotdiff.exports.text import text_file
from spotdiff.jobs.folder import RunFolder
from spotdiff.protocol import SampleRecord
from spotdiff.storage import ArtifactStore

__all__ = [
    "EXPORTS",
    "FORMATS",
    "ExportFormat",
    "ExportOptions",
    "ExportUnavailable",
    "export",
    "read_records",
    "write_jsonl",
]

ExportFormat = Literal["llava", "imgdiff", "llava_onevision", "messages", "hf", "parquet", "dj", "jsonl"]
FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)


def read_records(run_dir: Path) -> list[SampleRecord]:
    """The records of a run folder (a ``spotdiff run`` output or a job's folder), in the run's order."""
    return list(RunFolder(ArtifactStore(str(run_dir))).iter_records())


def write_jsonl(records: Iterable[SampleRecord], target: Path) -> Path:
    with text_file(target) as handle:
        for record in records:
            handle.write(record.model_dump_json() + "\n")
    return target


def export_jsonl(records: Iterable[SampleRecord], store: ArtifactStore, out_dir: Path, options: ExportOptions) -> Path:
    return write_jsonl(records, out_dir / "records.jsonl")


Exporter = Callable[[Iterable[SampleRecord], ArtifactStore, Path, ExportOptions], Path]


@dataclass(frozen=True)
class ExportKind:
    """How one format is written, and how it travels: one file as it is, or a zip of the folder (images)."""

    write: Exporter
    media_type: str
    zipped: bool


ZIP = "application/zip"
EXPORTS: dict[ExportFormat, ExportKind] = {
    "llava": ExportKind(export_llava, ZIP, zipped=True),
    "imgdiff": ExportKind(export_imgdiff, ZIP, zipped=True),
    "llava_onevision": ExportKind(export_llava_onevision, ZIP, zipped=True),
    "messages": ExportKind(export_messages, ZIP, zipped=True),
    "hf": ExportKind(export_hf, ZIP, zipped=True),
    "parquet": ExportKind(export_parquet, ZIP, zipped=True),  # with its images beside it
    "dj": ExportKind(export_dj, ZIP, zipped=True),
    "jsonl": ExportKind(export_jsonl, "application/jsonl", zipped=False),
}


def export(
    run_dir: Path, export_format: ExportFormat, out_dir: Path | None = None, options: ExportOptions | None = None
) -> Path:
    """Write one export of the run in ``run_dir`` (default: ``run_dir/exports/<format>``) and return its file."""
    if export_format not in EXPORTS:
        raise ValueError(f"unknown export format {export_format!r}; one of {', '.join(FORMATS)}")
    target = out_dir or run_dir / "exports" / export_format
    target.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(ArtifactStore(str(run_dir)))
    return EXPORTS[export_format].write(folder.iter_records(), folder.store, target, options or ExportOptions())
