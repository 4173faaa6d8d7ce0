"""Stand-ins for the four model services: their routes and wire models, canned answers after a fixed latency.

For the scale benchmark only (`bench/scale.py`): it measures the job machinery (gateway, Celery, Redis, the
store), not the models, so every answer costs the same fixed latency and no CPU. The answers are valid wire
models that pass the tiny profile's thresholds: a 64x64 image pair, two proposals, short labels.

    python -m bench.standin --latency-ms 10 --ports 8101,8102,8103,8104
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io

import uvicorn
from fastapi import FastAPI
from PIL import Image

from spotdiff.protocol import Box, ModelInfo
from spotdiff.protocol.captioning import CaptionRequest, CaptionResponse
from spotdiff.protocol.generation import GenerationParams, PairRequest, PairResponse
from spotdiff.protocol.regions import Proposal, ProposeRequest, ProposeResponse
from spotdiff.protocol.similarity import CosineRequest, CosineResponse
from spotdiff.settings import SERVICE_NAMES

SIZE = 64


def _png(colour: tuple[int, int, int]) -> str:
    image = Image.new("RGB", (SIZE, SIZE), (90, 140, 60))
    image.paste(colour, (16, 16, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


SOURCE, TARGET = _png((200, 40, 40)), _png((40, 40, 200))
PARAMS = GenerationParams(
    height=SIZE,
    width=SIZE,
    num_inference_steps=1,
    guidance_scale=7.5,
    edit="refine",
    cross_replace=1.0,
    cross_replace_words={},
    self_replace=0.4,
)
PROPOSALS = [
    Proposal(box=Box(x1=16, y1=16, x2=40, y2=40), area=576, predicted_iou=0.9, stability_score=0.9),
    Proposal(box=Box(x1=0, y1=0, x2=20, y2=30), area=600, predicted_iou=0.9, stability_score=0.9),
]


def standin_app(service: str, latency_s: float) -> FastAPI:
    app = FastAPI(title=f"stand-in {service}")
    model_id = f"standin-{service}"

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/v1/info")
    async def info() -> ModelInfo:
        return ModelInfo(
            service=service,
            model_id=model_id,
            revision="standin",
            dtype="none",
            device="none",
            max_batch_size=1,
            max_wait_ms=0,
            max_queue=1_000_000,
        )

    @app.post("/v1/pairs")
    async def pairs(request: PairRequest) -> PairResponse:
        await asyncio.sleep(latency_s)
        seed = request.seed if request.seed is not None else 0
        return PairResponse(
            source_image=SOURCE, target_image=TARGET, seed=seed, params=PARAMS, model_id=model_id, revision="s"
        )

    @app.post("/v1/cosine")
    async def cosine(request: CosineRequest) -> CosineResponse:
        await asyncio.sleep(latency_s)
        scores = [0.5] * len(request.pairs)
        return CosineResponse(scores=scores, model_id=model_id, image_text_scorer="clip")

    @app.post("/v1/proposals")
    async def proposals(request: ProposeRequest) -> ProposeResponse:
        await asyncio.sleep(latency_s)
        return ProposeResponse(proposals=PROPOSALS, width=SIZE, height=SIZE, model_id=model_id)

    @app.post("/v1/captions")
    async def captions(request: CaptionRequest) -> CaptionResponse:
        await asyncio.sleep(latency_s)
        return CaptionResponse(text="a red square", tokens=3, model_id=model_id)

    return app


async def serve(ports: dict[str, int], latency_s: float) -> None:
    servers = [
        uvicorn.Server(uvicorn.Config(standin_app(name, latency_s), port=port, log_level="warning", access_log=False))
        for name, port in ports.items()
    ]
    await asyncio.gather(*(server.serve() for server in servers))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--ports", required=True, help="four ports: generation, similarity, regions, captioning")
    args = parser.parse_args(argv)
    ports = dict(zip(SERVICE_NAMES, (int(port) for port in args.ports.split(",")), strict=True))
    asyncio.run(serve(ports, args.latency_ms / 1000))


if __name__ == "__main__":
    main()
