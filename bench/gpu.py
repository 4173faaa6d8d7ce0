"""One GPU benchmark, one run (``make bench-gpu``; within 15 minutes on one H100/H200):

- **readiness** of each service (load from disk + warm-up, through its app as `serve-service` runs it; target
  under 60 s), all five co-located on the one card, and the memory each one's load added;
- **P2P overhead**: a pair with spotdiff's P2P over stock SDXL's two-prompt batch (1024², 50 steps; target
  <= 1.10), and spotdiff's fused processor against the reference-style one (target <= 0.6);
- **throughput** of each service at batch size 1 and at its ``max_batch_size`` (concurrent requests that its
  micro-batcher groups), with the peak memory during each;
- **one pair through all four services** co-located (the pipeline's own code, each stage's seconds: with one
  pair on one device, its GPU-seconds), against the same pair run as the reference scripts run it (batch-1 P2P
  with the attention maps materialised and stored, automatic masks on both images, one scoring call per crop
  pair and per crop and noun, one captioning call at a time): target at most a third of its seconds.

Full-size random-weight models (``spotdiff models full-size``, built into ``--models`` when absent), fp16 on
the GPU, with the reference profile; the pipeline's thresholds are opened as the tiny profile's are, since
random weights would stop every pair at the first filter and leave the later stages unmeasured. ``--dry-run``
runs the same code on the tiny models on the CPU at a tiny workload (``make test`` runs it, so it cannot rot).
Figures go to ``--out`` as JSON and to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import math
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw

from spotdiff.clients import ServiceClient, ServiceClients
from spotdiff.imgdiff.render import png_bytes, side_by_side
from spotdiff.protocol import CaptionPair
from spotdiff.protocol.captioning import CaptionRequest
from spotdiff.protocol.generation import PairRequest
from spotdiff.protocol.regions import ProposeRequest
from spotdiff.protocol.rewriting import RewriteRequest
from spotdiff.protocol.similarity import CosineRequest, Operand, ScorePair
from spotdiff.settings import PIPELINE_SERVICES, REWRITING, Settings

SERVICES = (*PIPELINE_SERVICES, REWRITING)
PAIR = CaptionPair(id="bench", source="a photo of a dog on the grass", target="a photo of a cat on the grass", seed=0)
OPEN_THRESHOLDS = {  # what the tiny profile opens: random weights score every pair alike
    "pair_cosine_min": -1.0,
    "pair_cosine_max": 1.01,
    "text_match_min": -1.0,
    "crop_cosine_max": 1.01,
    "label_cosine_max": 1.01,
    "label_match_min": -1.0,
}
OPEN_MASKS = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
# the record's entries that are no device's work: parsing the captions' nouns is CPU text work on both sides alike
NOT_DEVICE_WORK = ("objects", "status", "peak_mib")
MAX_REFERENCE_CROPS = 64  # crops the reference-style scoring visits (every proposal, up to this many)


@dataclass(frozen=True)
class Workload:
    size: int
    steps: int
    repeats: int
    caption_tokens: int

    @classmethod
    def of(cls, dry_run: bool) -> Workload:
        return cls(64, 2, 1, 4) if dry_run else cls(1024, 50, 1, 64)


def settings_for(dry_run: bool, models: Path, workload: Workload) -> Settings:
    """The tiny profile on the CPU, or the reference profile on full-size weights, fp16 on the GPU; pairs at the
    workload's size and steps either way."""
    pairs = {"height": workload.size, "width": workload.size, "num_inference_steps": workload.steps}
    if dry_run:
        return Settings(profile="tiny", generation={**pairs, "device": "cpu"}, pipeline=OPEN_THRESHOLDS)
    from services.full_size import build_all, is_complete
    from spotdiff.weights import load_manifest, service_environment

    if not is_complete(models):
        build_all(models)
    blocks: dict[str, dict[str, Any]] = {name: {"device": "cuda", "dtype": "float16"} for name in SERVICES}
    for key, value in service_environment(load_manifest("reference"), str(models)).items():
        service, _, field = key.removeprefix("SPOTDIFF_").lower().partition("__")
        blocks[service][field] = value
    blocks["generation"].update(pairs)
    blocks["regions"].update(OPEN_MASKS)
    return Settings(profile="reference", **blocks, pipeline=OPEN_THRESHOLDS)


class Memory:
    """Peak and current memory of the device (CUDA's allocator) or, on the CPU, of this process (RSS)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def now_mib(self) -> float:
        if self.cuda:
            import torch

            return float(torch.cuda.memory_allocated()) / 2**20
        return _proc_status_kib("VmRSS") / 1024

    def reset_peak(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            return float(torch.cuda.max_memory_allocated()) / 2**20
        return _proc_status_kib("VmHWM") / 1024


def _proc_status_kib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return float(line.split()[1])
    return math.nan


def scene(size: int, colour: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (size, size), (90, 140, 60))
    ImageDraw.Draw(image).ellipse((size // 4, size // 3, size * 3 // 4, size * 2 // 3), fill=colour)
    return image


def b64png(image: Image.Image) -> str:
    return base64.b64encode(png_bytes(image)).decode("ascii")


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await work()
    return time.perf_counter() - started


class Bench:
    def __init__(self, settings: Settings, workload: Workload, memory: Memory) -> None:
        self.settings = settings
        self.workload = workload
        self.memory = memory
        self.apps: dict[str, Any] = {}
        self.clients: ServiceClients | None = None
        self.results: dict[str, Any] = {"readiness": {}, "throughput": {}}

    @asynccontextmanager
    async def colocated(self) -> AsyncIterator[ServiceClients]:
        """Every service's app in this process, started one after the other (each one's readiness alone)."""
        from services.registry import create_app

        async with AsyncExitStack() as stack:
            transports = {}
            for name in SERVICES:
                app = create_app(name, self.settings)
                before = self.memory.now_mib()
                started = time.perf_counter()
                await stack.enter_async_context(app.router.lifespan_context(app))
                client = ServiceClient(transport=httpx.ASGITransport(app=app), timeout=1800)
                stack.push_async_callback(client.aclose)
                await client.wait_ready(1800)
                self.results["readiness"][name] = {
                    "ready_s": round(time.perf_counter() - started, 2),
                    "weights_mib": round(self.memory.now_mib() - before, 1),
                }
                self.apps[name] = app
                transports[name] = httpx.ASGITransport(app=app)
            clients = ServiceClients.over_transports(transports)
            stack.push_async_callback(clients.aclose)
            self.clients = clients
            yield clients

    def runner(self, name: str) -> Any:
        return self.apps[name].state.runtime.runner

    def p2p(self) -> None:
        from bench.p2p import measure

        times = measure(self.runner("generation"), self.workload.size, self.workload.steps, self.workload.repeats)
        self.results["p2p"] = {
            **{key: round(value, 3) for key, value in times.items()},
            "p2p_over_plain": round(times["p2p_s"] / times["plain_s"], 3),
            "p2p_over_reference_style": round(times["p2p_s"] / times["reference_style_s"], 3),
        }

    def requests(self, name: str, count: int) -> list[Callable[[], Awaitable[object]]]:
        """``count`` distinct requests of one service's main operation."""
        assert self.clients is not None
        clients, size = self.clients, self.workload.size
        image = b64png(scene(size, (200, 60, 40)))
        if name == "generation":
            return [
                lambda seed=seed: clients.generation.pair(
                    PairRequest(
                        source=PAIR.source,
                        target=PAIR.target,
                        seed=seed,
                        height=size,
                        width=size,
                        num_inference_steps=self.workload.steps,
                    )
                )
                for seed in range(count)
            ]
        if name == "regions":
            return [lambda: clients.regions.propose(ProposeRequest(image=image)) for _ in range(count)]
        if name == "similarity":
            half = size // 2
            crop = {"x1": 0, "y1": 0, "x2": half, "y2": half}
            pairs = [
                ScorePair(a=Operand(image="scene", box=crop), b=Operand(text=f"a photo of thing {index}"))
                for index in range(count)
            ]
            return [lambda: clients.similarity.cosine(CosineRequest(images={"scene": image}, pairs=pairs))]
        if name == "captioning":
            wide = b64png(Image.new("RGB", (size * 2 + 20, size), (90, 140, 60)))
            return [
                lambda index=index: clients.captioning.caption(
                    CaptionRequest(
                        image=wide, prompt=f"What differs, {index}?", max_new_tokens=self.workload.caption_tokens
                    )
                )
                for index in range(count)
            ]
        assert clients.rewriting is not None
        return [
            lambda seed=seed: clients.rewriting.rewrite(RewriteRequest(caption="A dog on the grass.", seed=seed))  # type: ignore[union-attr]
            for seed in range(count)
        ]

    async def throughput(self) -> None:
        """Items per second at batch 1 and at the service's batch limit (for similarity: one request of that many
        score pairs, since it batches within a request)."""
        for name in SERVICES:
            sizes = sorted({1, self.settings.service(name).max_batch_size})
            rows = {}
            for batch in sizes:
                calls = self.requests(name, batch)
                self.memory.reset_peak()
                seconds = await timed(lambda calls=calls: asyncio.gather(*(call() for call in calls)))
                rows[str(batch)] = {
                    "seconds": round(seconds, 3),
                    "items_per_s": round(batch / seconds, 3),
                    "peak_mib": round(self.memory.peak_mib(), 1),
                }
            self.results["throughput"][name] = rows

    async def pair_colocated(self) -> dict[str, float]:
        """One pair through the pipeline's own stages; each stage's seconds as the record's timings say."""
        from spotdiff.pipeline.stages import PairPipeline
        from spotdiff.storage import ArtifactStore

        assert self.clients is not None
        with tempfile.TemporaryDirectory() as out:
            pipeline = await PairPipeline.connect(self.clients, ArtifactStore(out), self.settings)
            self.memory.reset_peak()
            record = await pipeline.run(PAIR)
        stages = {key.removesuffix("_s"): value for key, value in record.timings.items() if key.endswith("_s")}
        return {**stages, "status": record.status.value, "peak_mib": round(self.memory.peak_mib(), 1)}  # type: ignore[dict-item]

    async def pair_reference_style(self) -> dict[str, float]:
        """The same pair the way the reference scripts spend the device: one call per unit of work."""
        from bench.p2p_reference import ReferenceStyleProcessor
        from services.generation.p2p import P2PAttnProcessor

        assert self.clients is not None
        clients, pipeline = self.clients, self.settings.pipeline
        generation = self.runner("generation")
        request = PairRequest(source=PAIR.source, target=PAIR.target, seed=0)  # the settings' size and steps
        reference = ReferenceStyleProcessor(generation.slot, store_maps=True)
        generation.pipe.unet.set_attn_processor(reference)
        try:
            started = time.perf_counter()
            pair = await clients.generation.pair(request)
            generate = time.perf_counter() - started
        finally:
            generation.pipe.unet.set_attn_processor(P2PAttnProcessor(generation.slot))
            reference.maps.clear()
        images = {"source": pair.source_image, "target": pair.target_image}
        started = time.perf_counter()
        proposals = [await clients.regions.propose(ProposeRequest(image=image)) for image in images.values()]
        regions = time.perf_counter() - started
        boxes = [proposal.box for found in proposals for proposal in found.proposals][:MAX_REFERENCE_CROPS]
        started = time.perf_counter()
        for box in boxes:
            units = [ScorePair(a=Operand(image="source", box=box), b=Operand(image="target", box=box))]
            units += [ScorePair(a=Operand(image="source", box=box), b=Operand(text=noun)) for noun in ("dog", "cat")]
            for unit in units:
                await clients.similarity.cosine(CosineRequest(images=images, pairs=[unit]))
        scoring = time.perf_counter() - started
        decoded = [Image.open(io.BytesIO(base64.b64decode(image))) for image in images.values()]
        both = b64png(side_by_side(*decoded))
        started = time.perf_counter()
        for _ in range(2 * pipeline.max_labelled_regions):  # a label of each region in each image, one at a time
            ask = CaptionRequest(
                image=pair.source_image, prompt="Describe the object.", max_new_tokens=pipeline.label_max_new_tokens
            )
            await clients.captioning.caption(ask)
        ask = CaptionRequest(image=both, prompt="What differs?", max_new_tokens=pipeline.caption_max_new_tokens)
        await clients.captioning.caption(ask)
        captions = time.perf_counter() - started
        return {"generate": generate, "regions": regions, "scoring": scoring, "captioning": captions}

    async def run(self) -> dict[str, Any]:
        async with self.colocated():
            self.p2p()
            await self.throughput()
            ours = await self.pair_colocated()
            reference = await self.pair_reference_style()
        ours_total = sum(value for key, value in ours.items() if key not in NOT_DEVICE_WORK)
        self.results["pair"] = {
            "spotdiff": {key: round(value, 3) if isinstance(value, float) else value for key, value in ours.items()},
            "reference_style": {key: round(value, 3) for key, value in reference.items()},
            "spotdiff_s": round(ours_total, 3),
            "reference_style_s": round(sum(reference.values()), 3),
            "spotdiff_over_reference_style": round(ours_total / sum(reference.values()), 3),
        }
        return self.results


def summary(results: dict[str, Any]) -> list[str]:
    """The figures against their targets, one line each."""
    p2p, pair = results["p2p"], results["pair"]
    lines = [
        f"p2p/plain {p2p['p2p_over_plain']} (target <= 1.10); p2p/reference-style "
        f"{p2p['p2p_over_reference_style']} (target <= 0.6)",
        f"pair: spotdiff {pair['spotdiff_s']} s vs reference-style {pair['reference_style_s']} s: "
        f"{pair['spotdiff_over_reference_style']} (target <= 0.333)",
    ]
    for name, ready in results["readiness"].items():
        rows = ", ".join(
            f"batch {batch}: {row['items_per_s']}/s, peak {row['peak_mib']} MiB"
            for batch, row in results["throughput"][name].items()
        )
        lines.append(f"{name}: ready in {ready['ready_s']} s (target < 60), +{ready['weights_mib']} MiB; {rows}")
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the tiny models on the CPU, a tiny workload")
    default_models = Path(os.environ.get("SPOTDIFF_FULL_DIR", Path.home() / ".cache" / "spotdiff" / "full"))
    parser.add_argument("--models", type=Path, default=default_models, help="full-size models (built if absent)")
    parser.add_argument("--out", type=Path, default=Path("out/bench-gpu.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            parser.error("no CUDA device: bench/gpu.py measures a GPU (--dry-run runs its code on the CPU)")
    workload = Workload.of(args.dry_run)
    settings = settings_for(args.dry_run, args.models, workload)
    if args.dry_run:
        from spotdiff.cli import ensure_tiny_models

        ensure_tiny_models(settings)
    started = time.perf_counter()
    results = asyncio.run(Bench(settings, workload, Memory(cuda=not args.dry_run)).run())
    results["workload"] = {
        **workload.__dict__,
        "dry_run": args.dry_run,
        "seconds": round(time.perf_counter() - started),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for line in summary(results):
        print(line, flush=True)
    return results


if __name__ == "__main__":
    main()
