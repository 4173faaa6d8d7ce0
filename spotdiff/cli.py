"""The ``spotdiff`` command: run, pairs, report, export, serve-service, serve, models.

The command line is the top of the house: it is the one module of the kernel that starts the other parts
(services, the gateway, a worker), each lazily, inside the command that needs it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spotdiff import __version__
from spotdiff.exports import FORMATS
from spotdiff.logs import configure_logging, log_context
from spotdiff.settings import PROFILES, REWRITERS, SERVICE_NAMES, Settings

if TYPE_CHECKING:
    from spotdiff.clients import GenerationClient

RUN_FOLDER = "a run folder: a `spotdiff run` output, or a job's folder in the store (manifest.json, records/)"

# exit codes (README: "The command line"): 0 done; 1 failed at run time; 2 bad input or settings; 3 a dependency
# missing (a package, a service, Redis); 130 interrupted
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_MISSING, EXIT_INTERRUPTED = 1, 2, 3, 130


class CliError(Exception):
    """A user's mistake or a missing dependency, said in one line with what to do; never a traceback."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default (where it has one that its help does not already say)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
            or "default" in text
        ):
            return text
        return super()._get_help_string(action) or text


def _offline_by_default() -> None:
    """Never reach for a hub unless the user asked: a hub id otherwise hangs for minutes before failing."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {"profile": args.profile} if getattr(args, "profile", None) else {}
    if getattr(args, "rewriter", None):
        overrides["rewriter"] = args.rewriter
    return Settings(**overrides)


def _input_file(name: str) -> Path:
    path = Path(name)
    if not path.is_file():
        raise CliError(f"{name}: no such file" + (" (it is a folder)" if path.is_dir() else ""))
    return path


def _run_folder(name: str) -> Path:
    from spotdiff.jobs.folder import MANIFEST

    run_dir = Path(name)
    if not (run_dir / MANIFEST).is_file():
        raise CliError(
            f"{run_dir / MANIFEST} not found: DIR must be a run folder (a `spotdiff run` output or a job's folder in "
            "the store), not a file such as samples.jsonl"
        )
    return run_dir


def ensure_tiny_models(settings: Settings) -> None:
    """Build the tiny checkpoints the tiny profile points at, once."""
    if settings.profile != "tiny":
        return
    from services.tiny import build_all, is_complete

    if not is_complete(settings.tiny_dir):
        print(f"building tiny checkpoints in {settings.tiny_dir}", file=sys.stderr)
        build_all(settings.tiny_dir)


def cmd_run(args: argparse.Namespace) -> int:
    from services.registry import in_process
    from spotdiff.runner import GALLERY, REPORT, SAMPLES, RunSummary, read_pairs, run_embedded

    settings = _settings(args)
    if args.concurrency:
        settings.pipeline.concurrency = args.concurrency
    source = _input_file(args.pairs)
    out = Path(args.out)
    captions = source.suffix == ".txt"  # single captions: rewritten into pairs first, kept beside the run for review
    if captions:
        _check_rewrites(args.rewrites)
    else:
        pairs, errors = read_pairs(source)
        if args.strict and errors:
            first = errors[0]
            raise CliError(f"{args.pairs}:{first.line}: {first.message} (--strict: nothing was run)")
        if not pairs:
            why = f"; {len(errors)} lines could not be read, the first: line {errors[0].line}" if errors else ""
            raise CliError(f"{args.pairs}: no caption pairs to run{why}")
    ensure_tiny_models(settings)

    async def run() -> RunSummary:
        async with in_process(settings) as clients:  # the rewrites' tokens are counted by the run's own model
            path, dropped = source, []
            if captions:
                out.mkdir(parents=True, exist_ok=True)
                path, drops = await _write_pairs(
                    source, out / "pairs.jsonl", args.rewrites, args.seed, settings, clients.generation
                )
                dropped = [drop.record(settings.profile) for drop in drops]
            return await run_embedded(path, out, settings, progress=not args.quiet, clients=clients, dropped=dropped)

    summary = asyncio.run(run())
    for error in summary.input_errors:
        print(f"{args.pairs}:{error.line}: skipped: {error.message}", file=sys.stderr)
    print(
        f"{summary.pairs} pairs: {summary.accepted} accepted, {summary.rejected} rejected"
        + (f", {len(summary.input_errors)} input lines skipped" if summary.input_errors else "")
        + f" in {summary.seconds:.1f}s\n"
        f"  {out / SAMPLES}\n  {out / GALLERY}\n  {out / REPORT}"
    )
    return 0


def _check_rewrites(rewrites: int) -> None:
    if rewrites < 1:
        raise CliError(f"--rewrites {rewrites}: at least 1")


async def _write_pairs(
    captions_file: Path, out: Path, rewrites: int, seed: int, settings: Settings, generation: GenerationClient
) -> tuple[Path, list[Any]]:
    """Caption pairs from a file of single captions (one per line), by the settings' rewriter (a language model
    is the rewriting service, started in this process), each prompt counted by ``generation``'s tokenizers; each
    drop said."""
    from spotdiff.captions import ModelCounter, ModelRewriter, pairs_from_captions, read_captions

    captions = read_captions(captions_file.read_text(encoding="utf-8").splitlines())
    counter = ModelCounter(generation)
    if settings.rewriter == "lexicon":
        pairs, dropped = await pairs_from_captions(captions, rewrites=rewrites, base_seed=seed, counter=counter)
    else:
        from services.registry import service_in_process
        from spotdiff.clients import RewritingClient
        from spotdiff.settings import REWRITING

        async with service_in_process(REWRITING, RewritingClient, settings) as client:
            pairs, dropped = await pairs_from_captions(captions, rewrites, seed, ModelRewriter(client), counter=counter)
    for drop in dropped:
        print(f"{captions_file}:{drop.line}: rewrite {drop.rewrite} dropped: {drop.reason}", file=sys.stderr)
    if not pairs:
        raise CliError(f"{captions_file}: no caption gave a pair ({len(captions)} captions read)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(pair.model_dump_json(exclude_none=True) + "\n" for pair in pairs), encoding="utf-8")
    print(f"{len(pairs)} pairs from {len(captions)} captions: {out}", file=sys.stderr)
    return out, dropped


def cmd_pairs(args: argparse.Namespace) -> int:
    """Pairs only: the generation service is started here too, for its tokenizers' counts."""
    from services.registry import service_in_process
    from spotdiff.clients import GenerationClient

    settings = _settings(args)
    captions_file = _input_file(args.captions)
    _check_rewrites(args.rewrites)
    ensure_tiny_models(settings)

    async def write() -> None:
        async with service_in_process("generation", GenerationClient, settings) as generation:
            await _write_pairs(captions_file, Path(args.out), args.rewrites, args.seed, settings, generation)

    asyncio.run(write())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Render a dataset on disk as one self-contained HTML file."""
    from pydantic import ValidationError

    from spotdiff.exports import read_records
    from spotdiff.jobs.folder import RECORDS
    from spotdiff.report import render_report, store_image_bytes
    from spotdiff.runner import REPORT
    from spotdiff.storage import ArtifactStore

    run_dir = _run_folder(args.dir)
    try:
        records = read_records(run_dir)
    except ValidationError as exc:
        raise CliError(f"{run_dir / RECORDS} holds a file that is no sample record: {_first_problem(exc)}") from exc
    out = Path(args.out) if args.out else run_dir / REPORT
    title = args.title or f"spotdiff report · {run_dir.resolve().name}"
    page = render_report(records, store_image_bytes(ArtifactStore(str(run_dir))), title=title)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(out)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from spotdiff.exports import ExportOptions, ExportUnavailable, export
    from spotdiff.jobs.folder import RECORDS

    run_dir = _run_folder(args.dir)
    options = ExportOptions(
        image_root=Path(args.image_root) if args.image_root else None, embed_images=args.embed_images
    )
    try:
        written = export(run_dir, args.format, Path(args.out) if args.out else None, options)
    except ValidationError as exc:
        raise CliError(f"{run_dir / RECORDS} holds a file that is no sample record: {_first_problem(exc)}") from exc
    except ExportUnavailable as exc:
        raise CliError(str(exc), EXIT_MISSING) from exc
    print(written)
    return 0


def cmd_serve_gateway(args: argparse.Namespace) -> int:
    """The gateway alone (its own container or pod): jobs, single-service calls, the web page, metrics."""
    import uvicorn

    from gateway.app import create_app

    with log_context(service="gateway"):
        uvicorn.run(
            create_app(_settings(args)), host=args.host, port=args.port, log_level=args.log_level, log_config=None
        )
    return 0


def _share_the_cpu_politely() -> None:
    """A service process usually shares its cores with other services and workers. OpenMP's threads spin
    while they wait for work by default, and several processes spinning on the same cores slow each other
    down several times over (measured in docs/performance.md); passive waiting gives the cores back. Must run
    before torch is imported; a value the user set wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cmd_serve_service(args: argparse.Namespace) -> int:
    _share_the_cpu_politely()
    import uvicorn

    from services.registry import create_app

    settings = _settings(args)
    ensure_tiny_models(settings)
    app = create_app(args.name, settings)
    runtime = app.state.runtime
    # log_config=None: uvicorn's own lines go through the root handler too, in the same format
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, log_config=None)
    )

    async def serve() -> None:
        async def stop_when_the_load_failed() -> None:
            await runtime.failed.wait()
            server.should_exit = True

        watcher = asyncio.create_task(stop_when_the_load_failed())
        try:
            await server.serve()
        finally:
            watcher.cancel()

    with log_context(service=args.name):
        asyncio.run(serve())
    if runtime.failed.is_set():  # logged with its traceback; exit so that a supervisor restarts the service
        print(f"spotdiff serve-service {args.name}: the model failed to load: {runtime.error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Gateway, the services in use (this process) and a Celery worker (a child process) on the local Redis."""
    import json
    import subprocess

    settings = _settings(args)
    _require_redis(settings.redis_url)
    ensure_tiny_models(settings)
    urls = {name: f"http://{args.host}:{args.services_port + i}" for i, name in enumerate(SERVICE_NAMES)}
    settings = settings.model_copy(update={"worker": settings.worker.model_copy(update={"service_urls": urls})})
    env = {
        **os.environ,
        "SPOTDIFF_WORKER__SERVICE_URLS": json.dumps(urls),
        "SPOTDIFF_PROFILE": settings.profile,
        "SPOTDIFF_TINY_DIR": str(settings.tiny_dir),
        "SPOTDIFF_REDIS_URL": settings.redis_url,
        "SPOTDIFF_STORAGE_URL": settings.storage_url,
    }
    from services.launch import worker_command

    worker = subprocess.Popen(worker_command(args.workers), env=env, preexec_fn=_die_with_parent)
    try:
        asyncio.run(_serve_all(settings, args.host, args.port, args.services_port, args.log_level))
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    return 0


def _require_redis(url: str) -> None:
    """The stack keeps its jobs' progress and queues in Redis: without one, say so before starting anything."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except (redis.RedisError, OSError) as exc:
        raise CliError(
            f"Redis does not answer at {url} ({exc}): start one (redis-server), or point SPOTDIFF_REDIS_URL at it",
            EXIT_MISSING,
        ) from exc


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM if this process dies, even by SIGKILL, so no worker is left behind."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def _serve_all(settings: Settings, host: str, port: int, services_port: int, log_level: str) -> None:
    import contextlib
    import signal

    import uvicorn

    from gateway.app import create_app as create_gateway
    from services.registry import create_app

    apps = [(create_gateway(settings), port)]
    apps += [
        (create_app(name, settings), services_port + SERVICE_NAMES.index(name)) for name in settings.services_in_use()
    ]
    servers = [
        uvicorn.Server(uvicorn.Config(app, host=host, port=p, log_level=log_level, log_config=None)) for app, p in apps
    ]
    for server in servers:  # one handler for all five servers: each would otherwise take the signal for itself
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    print(f"spotdiff: gateway on http://{host}:{port} (services from port {services_port})", file=sys.stderr)
    await asyncio.gather(*(server.serve() for server in servers))


def cmd_models_tiny(args: argparse.Namespace) -> int:
    from services.tiny import build_all

    written = build_all(Path(args.out) if args.out else Settings().tiny_dir, seed=args.seed)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def cmd_models_full_size(args: argparse.Namespace) -> int:
    from services.full_size import build_all
    from spotdiff.weights import load_manifest, service_environment

    out = Path(args.out)
    try:
        written = build_all(out, seed=args.seed, only=tuple(args.only))
    except LookupError as exc:
        print(f"models full-size: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for name, path in written.items():
        print(f"{name}: {path}")
    print("point the services at it with SPOTDIFF_PROFILE=reference and:")
    for key, value in service_environment(load_manifest("reference"), str(out.resolve())).items():
        print(f"{key}={value}")
    return 0


def cmd_models_fetch(args: argparse.Namespace) -> int:
    """Download a profile's weights; the network only when the user says so (everything else here is offline)."""
    from spotdiff.weights import load_manifest, load_manifest_file, service_environment
    from spotdiff.weights.fetch import WeightsError, fetch, load_lock

    if not args.allow_network:
        print("models fetch downloads from the hub: pass --allow-network to let it", file=sys.stderr)
        return 3
    os.environ["HF_HUB_OFFLINE"] = "0"
    if args.endpoint:
        os.environ["HF_ENDPOINT"] = args.endpoint
    out = Path(args.out)
    try:
        manifest = load_manifest_file(Path(args.manifest)) if args.manifest else load_manifest(args.profile)
        lock = load_lock(Path(args.lock)) if args.lock else None
        token = os.environ.get("HF_TOKEN") or None  # set but empty (Compose's ${HF_TOKEN:-}) is no token
        fetch(manifest, out, endpoint=args.endpoint, token=token, lock=lock)
    except (LookupError, WeightsError) as exc:
        print(f"models fetch: {exc}", file=sys.stderr)
        return 2
    print(f"fetched into {out}; point the services at it with:")
    for key, value in service_environment(manifest, str(out.resolve())).items():
        print(f"{key}={value}")
    return 0


def cmd_models_verify(args: argparse.Namespace) -> int:
    from spotdiff.weights import load_manifest, load_manifest_file
    from spotdiff.weights.fetch import WeightsError, verify

    try:
        manifest = load_manifest_file(Path(args.manifest)) if args.manifest else load_manifest(args.profile)
        problems = verify(manifest, Path(args.dir))
    except (LookupError, WeightsError) as exc:
        problems = [str(exc)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{args.dir}: every file of the {args.profile} profile is there and matches its lock")
    return 1 if problems else 0


def _command_parser(common: argparse.ArgumentParser) -> type[argparse.ArgumentParser]:
    """Every command's parser shows defaults in --help and takes the common options."""

    class CommandParser(argparse.ArgumentParser):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("formatter_class", HelpFormatter)
            kwargs.setdefault("parents", [common])
            super().__init__(*args, **kwargs)

    return CommandParser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spotdiff", description="Img-Diff difference samples as a service", formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"spotdiff {__version__}")
    parser.add_argument("--debug", action="store_true", help="show an error's traceback")
    # --debug after the command too; SUPPRESS, so that a command's default does not undo one given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show an error's traceback")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_command_parser(common))

    run = commands.add_parser("run", help="run caption pairs end to end in this process")
    run.add_argument(
        "pairs",
        help="JSONL file: one {id?, source, target, source_objects?, target_objects?, seed?}; or a .txt of "
        "single captions, rewritten into pairs first (OUT/pairs.jsonl)",
    )
    run.add_argument("--out", required=True, help="output directory")
    run.add_argument("--profile", choices=PROFILES, help="model profile (default: SPOTDIFF_PROFILE)")
    run.add_argument(
        "--concurrency", type=int, default=0, help="pairs in flight at once (default: SPOTDIFF_PIPELINE__CONCURRENCY)"
    )
    run.add_argument("--strict", action="store_true", help="exit 2 at the first bad input line, before any model work")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--rewrites", type=int, default=1, help="a .txt of captions: pairs made from each caption")
    run.add_argument("--seed", type=int, default=0, help="a .txt of captions: the rewrites' base seed")
    run.add_argument("--rewriter", choices=REWRITERS, help="a .txt of captions: what rewrites (default: the profile's)")
    run.set_defaults(func=cmd_run)

    pairs = commands.add_parser(
        "pairs", help="caption pairs from single captions (one per line), for review before a run"
    )
    pairs.add_argument("captions", help="text file: one caption per line")
    pairs.add_argument("--out", required=True, help="JSONL of caption pairs, as `spotdiff run` reads")
    pairs.add_argument("--rewrites", type=int, default=1, help="pairs made from each caption")
    pairs.add_argument("--seed", type=int, default=0, help="base seed: the same seed, the same rewrites")
    pairs.add_argument("--profile", choices=PROFILES, help="model profile (default: SPOTDIFF_PROFILE)")
    pairs.add_argument(
        "--rewriter",
        choices=REWRITERS,
        help="lexicon: weight-free; model: the rewriting service's language model (default: SPOTDIFF_REWRITER, "
        "else the profile's)",
    )
    pairs.set_defaults(func=cmd_pairs)

    report = commands.add_parser("report", help="write a run's dataset as one self-contained HTML report")
    report.add_argument("dir", help=RUN_FOLDER)
    report.add_argument("--out", help="where to write (default DIR/report.html)")
    report.add_argument("--title", help="the page title (default: spotdiff report · DIR's name)")
    report.set_defaults(func=cmd_report)

    exporter = commands.add_parser("export", help="write a run's samples in a training format")
    exporter.add_argument(
        "dir", help="a run folder: a `spotdiff run` output or a job's folder (manifest.json, records/)"
    )
    exporter.add_argument("--format", required=True, choices=FORMATS)
    exporter.add_argument("--out", help="where to write (default DIR/exports/FORMAT)")
    exporter.add_argument("--image-root", help="dj: write image paths relative to this folder (default: absolute)")
    exporter.add_argument(
        "--embed-images", action="store_true", help="parquet: the images' bytes in the file, not JPEGs beside it"
    )
    exporter.set_defaults(func=cmd_export)

    serve = commands.add_parser("serve-service", help="serve one model service over HTTP")
    serve.add_argument("name", choices=SERVICE_NAMES)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--profile", choices=PROFILES)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve_service)

    gateway = commands.add_parser("serve-gateway", help="serve the gateway alone (services and workers elsewhere)")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8000)
    gateway.add_argument("--log-level", default="info")
    gateway.set_defaults(func=cmd_serve_gateway)

    stack = commands.add_parser("serve", help="gateway + the four services + a Celery worker, on the local Redis")
    stack.add_argument("--host", default="127.0.0.1")
    stack.add_argument("--port", type=int, default=8000, help="the gateway's port")
    stack.add_argument("--services-port", type=int, default=8101, help="the first of four service ports")
    stack.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    stack.add_argument("--profile", choices=PROFILES)
    stack.add_argument("--log-level", default="warning")
    stack.set_defaults(func=cmd_serve)

    models = commands.add_parser("models", help="model checkpoints")
    model_commands = models.add_subparsers(dest="models_command", required=True, parser_class=type(models))
    tiny = model_commands.add_parser("tiny", help="build the tiny random-weight checkpoints")
    tiny.add_argument("--out", help="where to build them (default: SPOTDIFF_TINY_DIR, where every command looks)")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    tiny.set_defaults(func=cmd_models_tiny)
    full = model_commands.add_parser(
        "full-size",
        help="build every reference model at its real size with random weights, laid out as `fetch` lays out "
        "the real ones (about 20 GB; for benchmarks and the full-size tests, never for data)",
    )
    full.add_argument("--out", required=True, help="the models directory")
    full.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    full.add_argument("--only", nargs="+", default=[], help="these sources of the manifest only (default: all)")
    full.set_defaults(func=cmd_models_full_size)
    fetch = model_commands.add_parser(
        "fetch", help="download a profile's weights, each file checked against the hub's hash; writes a lock"
    )
    fetch.add_argument("--profile", default="reference")
    fetch.add_argument("--out", required=True, help="the models directory (the services' /models)")
    fetch.add_argument("--allow-network", action="store_true", help="this command's one use of the network")
    fetch.add_argument("--endpoint", help="a hub other than huggingface.co (a mirror with the hub's layout)")
    fetch.add_argument("--lock", help="fetch exactly the commits and sha256s of this weights.lock.json")
    fetch.add_argument("--manifest", help="a manifest file of your own in place of the profile's")
    fetch.set_defaults(func=cmd_models_fetch)
    check = model_commands.add_parser("verify", help="check a models directory against its lock")
    check.add_argument("dir")
    check.add_argument("--profile", default="reference")
    check.add_argument("--manifest", help="a manifest file of your own in place of the profile's")
    check.set_defaults(func=cmd_models_verify)
    return parser


def _first_problem(error: Exception) -> str:
    """One line of a pydantic error: where and what (the whole report is a screenful)."""
    from pydantic import ValidationError

    if not isinstance(error, ValidationError) or not error.errors():
        return str(error).splitlines()[0]
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}" if where else f"{first['msg']}{more}"


def explain(error: BaseException) -> tuple[int, str]:
    """The exit code and one line for an error no command caught: what went wrong and what to do."""
    from pydantic import ValidationError

    if isinstance(error, CliError):
        return error.code, str(error)
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(error, ValidationError) and error.title == "Settings":
        problems = []
        for item in error.errors():
            name = "SPOTDIFF_" + "__".join(str(part) for part in item["loc"]).upper()
            problems.append(f"{name}={item.get('input')!r}: {item['msg']}")
        return EXIT_BAD_INPUT, "bad setting: " + "; ".join(problems)
    if isinstance(error, ModuleNotFoundError):
        return EXIT_MISSING, f"{error.name} is not installed: pip install 'spotdiff[models]' (the model libraries)"
    if isinstance(error, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return EXIT_BAD_INPUT, f"{error.filename}: {error.strerror}"
    if type(error).__module__.startswith("redis") and "Connection" in type(error).__name__:
        return EXIT_MISSING, f"Redis does not answer ({error}): start it, or point SPOTDIFF_REDIS_URL at one"
    return EXIT_FAILED, f"failed: {type(error).__name__}: {error} (--debug shows the traceback)"


def main(argv: list[str] | None = None) -> int:
    _offline_by_default()
    args = build_parser().parse_args(argv)
    try:
        configure_logging("warning", json_format=Settings().log_json)
        code: int = args.func(args)
        return code
    except (Exception, KeyboardInterrupt) as error:
        if args.debug:
            raise
        code, message = explain(error)
        print(f"spotdiff {args.command}: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
