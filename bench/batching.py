"""Does micro-batching give HTTP clients the throughput of a batched in-process call?

Measures, in one run, on one model:
- ``http``: items/s of the similarity service (its own process, ``spotdiff serve-service``) answering 16
  concurrent clients that each send one image-text pair per request;
- ``inprocess``: items/s of the same model called directly with batches of 16 such items (no HTTP, no JSON,
  no base64, no PNG decoding);
and prints ``http / inprocess``. The default model is open_clip ``ViT-B-32`` with random weights (the
reference architecture at its real size, so the model's cost is real); ``--model tiny`` uses the tiny CLIP,
where the network costs almost nothing and the ratio shows the service's fixed overhead per request.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
from PIL import Image

from spotdiff.settings import Settings, SimilaritySettings

CLIENTS = 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def crop_images(count: int, size: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def similarity_settings(model: str) -> SimilaritySettings:
    """The measured model scores every pair itself (``text_scorer=clip``), so the ratio is about that model."""
    base = Settings(profile="tiny").similarity.model_copy(
        update={"max_batch_size": CLIENTS, "max_wait_ms": 50.0, "text_scorer": "clip"}
    )
    return base if model == "tiny" else base.model_copy(update={"model": model, "pretrained": None})


def inprocess_items_per_second(settings: SimilaritySettings, images: list[Image.Image], rounds: int) -> float:
    from services.similarity.jobs import CosineJob
    from services.similarity.model import SimilarityModel
    from spotdiff.protocol.similarity import Operand, ScorePair

    model = SimilarityModel(settings)
    model.load()
    model.warmup()
    pair = ScorePair(a=Operand(image="crop"), b=Operand(text="a photo of a dog"))
    jobs = [CosineJob({"crop": image}, [pair]) for image in images]
    model.cosine(jobs[:CLIENTS])  # first batch of this size
    started = time.perf_counter()
    done = 0
    for round_number in range(rounds):
        batch = [jobs[(round_number * CLIENTS + k) % len(jobs)] for k in range(CLIENTS)]
        model.cosine(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


async def http_items_per_second(url: str, payloads: list[dict], total: int) -> tuple[float, str]:
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=CLIENTS)) as client:
        for payload in payloads[:CLIENTS]:  # warm the connections and the server's first batch
            (await client.post("/v1/cosine", json=payload)).raise_for_status()
        counter = iter(range(total))

        async def one_client() -> None:
            for number in counter:
                response = await client.post("/v1/cosine", json=payloads[number % len(payloads)])
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
        elapsed = time.perf_counter() - started
        metrics = (await client.get("/metrics")).text
    return total / elapsed, metrics


def mean_batch_size(metrics: str) -> float:
    values = {}
    for line in metrics.splitlines():
        for name in ("spotdiff_batch_size_sum", "spotdiff_batch_size_count"):
            if line.startswith(name):
                values[name] = float(line.rsplit(" ", 1)[1])
    return values["spotdiff_batch_size_sum"] / max(values["spotdiff_batch_size_count"], 1)


def serve(settings: SimilaritySettings, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SPOTDIFF_PROFILE": "tiny",
        "SPOTDIFF_SIMILARITY": json.dumps(settings.model_dump(mode="json")),
    }
    command = [
        sys.executable,
        "-m",
        "spotdiff.cli",
        "serve-service",
        "similarity",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return subprocess.Popen(command, env=env)


def wait_ready(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the similarity service did not become ready")


def measure(model: str, items: int, size: int) -> dict[str, float]:
    settings = similarity_settings(model)
    images = crop_images(32, size)
    payloads = [
        {"images": {"crop": png_b64(image)}, "pairs": [{"a": {"image": "crop"}, "b": {"text": "a photo of a dog"}}]}
        for image in images
    ]
    port = free_port()
    server = serve(settings, port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        http_rate, metrics = asyncio.run(http_items_per_second(url, payloads, items))
    finally:
        server.terminate()
        server.wait(timeout=60)
    inprocess_rate = inprocess_items_per_second(settings, images, max(items // CLIENTS, 1))
    return {
        "http_items_per_s": http_rate,
        "inprocess_items_per_s": inprocess_rate,
        "ratio": http_rate / inprocess_rate,
        "mean_server_batch": mean_batch_size(metrics),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="ViT-B-32 (random weights) and/or tiny")
    parser.add_argument("--items", type=int, default=0, help="requests per measurement")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from spotdiff.cli import ensure_tiny_models

    ensure_tiny_models(Settings(profile="tiny"))
    for model in args.model or ["ViT-B-32", "tiny"]:
        items = args.items or (192 if model != "tiny" else 512)
        size = 224 if model != "tiny" else 64
        result = measure(model, items, size)
        print(
            f"batching[{model}, {CLIENTS} clients x 1 item, {items} requests]: "
            f"http {result['http_items_per_s']:.1f} items/s, in-process batched "
            f"{result['inprocess_items_per_s']:.1f} items/s, ratio {result['ratio']:.3f} "
            f"(mean server batch {result['mean_server_batch']:.1f})",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
