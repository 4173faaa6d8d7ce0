"""The ``spotdiff`` command: run, serve-service, models."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from spotdiff.settings import SERVICE_NAMES, Settings


def _offline_by_default() -> None:
    """Never reach for a hub unless the user asked: a hub id otherwise hangs for minutes before failing."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {"profile": args.profile} if getattr(args, "profile", None) else {}
    return Settings(**overrides)


def ensure_tiny_models(settings: Settings) -> None:
    """Build the tiny checkpoints the tiny profile points at, once."""
    if settings.profile != "tiny":
        return
    from services.tiny import build_all, is_complete

    if not is_complete(settings.tiny_dir):
        print(f"building tiny checkpoints in {settings.tiny_dir}", file=sys.stderr)
        build_all(settings.tiny_dir)


def cmd_run(args: argparse.Namespace) -> int:
    from spotdiff.runner import GALLERY, SAMPLES, run_embedded

    settings = _settings(args)
    if args.concurrency:
        settings.pipeline.concurrency = args.concurrency
    ensure_tiny_models(settings)
    summary = asyncio.run(run_embedded(Path(args.pairs), Path(args.out), settings, progress=not args.quiet))
    for error in summary.input_errors:
        print(f"{args.pairs}:{error.line}: skipped: {error.message}", file=sys.stderr)
    print(
        f"{summary.pairs} pairs: {summary.accepted} accepted, {summary.rejected} rejected"
        + (f", {len(summary.input_errors)} input lines skipped" if summary.input_errors else "")
        + f" in {summary.seconds:.1f}s\n"
        f"  {Path(args.out) / SAMPLES}\n  {Path(args.out) / GALLERY}"
    )
    if args.strict and summary.input_errors:
        return 2
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from spotdiff.exports import export

    written = export(Path(args.dir), args.format, Path(args.out) if args.out else None)
    print(written)
    return 0


def cmd_serve_service(args: argparse.Namespace) -> int:
    import uvicorn

    from services.registry import create_app

    settings = _settings(args)
    ensure_tiny_models(settings)
    app = create_app(args.name, settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_models_tiny(args: argparse.Namespace) -> int:
    from services.tiny import build_all

    written = build_all(Path(args.out), seed=args.seed)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spotdiff", description="Img-Diff difference samples as a service")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run caption pairs end to end in this process")
    run.add_argument("pairs", help="JSONL file: one {id?, source, target, source_objects?, target_objects?, seed?}")
    run.add_argument("--out", required=True, help="output directory")
    run.add_argument("--profile", choices=["tiny", "reference"], help="model profile (default: SPOTDIFF_PROFILE)")
    run.add_argument("--concurrency", type=int, default=0, help="pairs in flight at once")
    run.add_argument("--strict", action="store_true", help="exit 2 when any input line was skipped")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    exporter = commands.add_parser("export", help="write a run's samples in a training format")
    exporter.add_argument("dir", help="a run's output directory (samples.jsonl, images/)")
    exporter.add_argument("--format", required=True, choices=["llava", "dj", "jsonl", "parquet"])
    exporter.add_argument("--out", help="where to write (default DIR/exports/FORMAT)")
    exporter.set_defaults(func=cmd_export)

    serve = commands.add_parser("serve-service", help="serve one model service over HTTP")
    serve.add_argument("name", choices=SERVICE_NAMES)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--profile", choices=["tiny", "reference"])
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve_service)

    models = commands.add_parser("models", help="model checkpoints")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    tiny = model_commands.add_parser("tiny", help="build the tiny random-weight checkpoints")
    tiny.add_argument("--out", default=str(Settings().tiny_dir))
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=cmd_models_tiny)
    return parser


def main(argv: list[str] | None = None) -> int:
    _offline_by_default()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
