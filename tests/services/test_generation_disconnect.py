"""A client that disconnects stops its pair: the handler answers 499 and the model thread is freed."""

import asyncio
import json
import time

import httpx

from services.registry import create_app
from spotdiff.settings import Settings


async def test_disconnect_interrupts_the_running_pair(settings: Settings) -> None:
    # a long pair to walk away from: above the tiny profile's step limit
    long_runs = settings.generation.model_copy(update={"max_steps": 200})
    app = create_app("generation", settings.model_copy(update={"generation": long_runs}))
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://generation")
        for _ in range(600):
            if (await client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        body = json.dumps({"source": "a dog", "target": "a cat", "seed": 1, "num_inference_steps": 200}).encode()
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict:
            if pending:
                return pending.pop()
            await asyncio.sleep(0.5)  # the client goes away half a second in
            return {"type": "http.disconnect"}

        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/pairs",
            "raw_path": b"/v1/pairs",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "client": ("test", 1),
            "server": ("test", 80),
        }
        await app(scope, receive, send)
        assert sent[0]["status"] == 499
        # 200 steps take seconds; an interrupted pair frees the model thread at its next step
        started = time.perf_counter()
        quick = await client.post("/v1/pairs", json={"source": "a dog", "target": "a cat", "num_inference_steps": 1})
        assert quick.status_code == 200
        assert time.perf_counter() - started < 2.0
        await client.aclose()
