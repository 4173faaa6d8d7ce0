"""The CPU Compose stack, run for real: build both images, start the stack, wait for every health check, run
examples/job.json through the gateway, download its LLaVA export and open every image it names, count captions'
tokens and submit a job of captions through the gateway, tear down.

    python docker/compose_test.py            # make compose-test

Needs a Docker engine and Compose. The images are built once; then the stack runs under every Compose found, so
the files are proven on both lines they support: v2 (the ``docker compose`` plugin, or the binary
``docker/compose-v2.sh`` puts in .cache/compose-v2) and 1.29 (Debian bookworm's ``docker-compose``).
``SPOTDIFF_COMPOSE`` names the commands instead, comma-separated (``"docker compose,docker-compose"``). The
images install from a wheelhouse the host's pip fills (so a build needs no registry and no TLS inside the
build), on the base image ``docker/base-image.sh`` finds or makes. Each phase's seconds go to
out/compose-test.json.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "spotdiff-compose-test"
FILES = ["-f", "docker-compose.yml", "-f", "docker-compose.cpu.yml"]
HEALTH_TIMEOUT_S = 900
JOB_TIMEOUT_S = 900
# requirements whose markers select them on Debian's Python 3.11.2 but not on a newer host Python
BASE_ONLY = ["async-timeout>=4.0.3"]


def say(message: str) -> None:
    print(f"[compose-test] {message}", flush=True)


def compose_version(command: list[str]) -> str | None:
    """The version line a Compose prints, None where the command is not a working Compose."""
    try:
        out = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else None


def compose_commands() -> list[tuple[list[str], str]]:
    """Every Compose to run the stack under, with its version: SPOTDIFF_COMPOSE's, else each one found, v2 first."""
    named = os.environ.get("SPOTDIFF_COMPOSE")
    if named:
        candidates = [shlex.split(command) for command in named.split(",") if command.strip()]
    else:
        candidates = [["docker", "compose"], [str(ROOT / ".cache" / "compose-v2" / "docker-compose")]]
        candidates += [[found] for found in [shutil.which("docker-compose")] if found]
    found: dict[str, list[str]] = {}
    for command in candidates:
        version = compose_version(command)
        if version is None and named:
            raise SystemExit(f"SPOTDIFF_COMPOSE names {shlex.join(command)!r}, which is not a working Compose")
        if version is not None and version not in found:  # the plugin and its binary are the same Compose
            found[version] = command
    if not found:
        raise SystemExit("no Compose: docker/compose-v2.sh (v2) or Debian's docker-compose (1.29)")
    return [(command, version) for version, command in found.items()]


def requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [*project["dependencies"], *extras["models"], *extras["hf"], *BASE_ONLY, "setuptools", "wheel"]


def fill_wheelhouse(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(folder), *requirements()]
    subprocess.run(command, check=True)


WHEELHOUSE_PORT = int(os.environ.get("SPOTDIFF_WHEELHOUSE_PORT", "38417"))  # fixed: the build cache keys on it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def served(folder: Path) -> Iterator[str]:
    """The wheelhouse over HTTP on the host's loopback, which a build on the host's network reaches."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", WHEELHOUSE_PORT), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def build_images(wheelhouse_url: str) -> str:
    """Both images (and a Redis image where no registry serves one); returns the Redis image to use."""
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": wheelhouse_url}
    out = subprocess.run(["docker/build-images.sh"], cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1].split("=", 1)[1]


def containers(compose: list[str], env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        [*compose, "-p", PROJECT, *FILES, "ps", "-q"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    return out.stdout.split()


def stack_services() -> set[str]:
    """The services `up` starts: the base file's, but for one-shots behind a profile (models-fetch)."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return {name for name, spec in services.items() if not spec.get("profiles")}


def wait_healthy(compose: list[str], env: dict[str, str]) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    expected = len(stack_services())
    while True:
        states = {}
        for container in containers(compose, env):
            inspect = [
                "docker",
                "inspect",
                "--format",
                "{{.Name}} {{.State.Status}} {{.State.Health.Status}}",
                container,
            ]
            name, status, health = subprocess.run(inspect, capture_output=True, text=True).stdout.split()
            states[name.strip("/")] = health if status == "running" else status
        if len(states) == expected and all(health == "healthy" for health in states.values()):
            return
        if any(state in {"exited", "dead", "unhealthy"} for state in states.values()) or time.monotonic() > deadline:
            subprocess.run([*compose, "-p", PROJECT, *FILES, "logs", "--tail", "40"], cwd=ROOT, env=env)
            raise SystemExit(f"the stack did not become healthy: {states}")
        time.sleep(5)


def run_job(gateway: str) -> tuple[str, dict[str, object]]:
    job = json.loads((ROOT / "examples/job.json").read_text())
    with httpx.Client(base_url=gateway, timeout=60) as client:
        created = client.post("/v1/jobs", json=job)
        created.raise_for_status()
        job_id = created.json()["id"]
        return job_id, finished(client, job_id)


def finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """The job's status once it has ended."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        status: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if status["state"] in {"done", "cancelled"}:
            return status
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} did not finish: {status}")
        time.sleep(2)


SHORT_CAPTION = "A dog on the grass"  # CLIP's tokenizer: 5 words and its start and end marks
LONG_CAPTION = "A dog " + "and a small brown cat " * 16 + "on the grass"  # over 77 tokens, under the char cap


def run_captions(gateway: str) -> dict[str, object]:
    """Captions through the gateway as the containers serve them: the generation service counts their tokens
    with its pipeline's tokenizers (relayed by the gateway), and a job of captions is made from the rewriting
    service's proposals, each pair and each dropped rewrite on record, or refused with every caption's reason.
    The tiny rewriter's words are random, so which of the two is not fixed; a 503 (a service out of reach from
    the gateway's container) or a pair not on record fails."""
    with httpx.Client(base_url=gateway, timeout=120) as client:
        counted = client.post("/v1/generation/tokenize", json={"texts": [SHORT_CAPTION, LONG_CAPTION]})
        counts = counted.raise_for_status().json()
        if counts["counts"][0] != 7 or counts["counts"][1] <= counts["max_tokens"]:
            raise SystemExit(f"the generation service counted {counts}")
        submitted = client.post("/v1/jobs", json={"captions": [SHORT_CAPTION, LONG_CAPTION]})
        if submitted.status_code == 422:
            error = submitted.json()["error"]
            lines = {detail.split(":")[0] for detail in error.get("details", [])}
            if error["code"] != "no_pairs" or lines != {"caption 1", "caption 2"}:
                raise SystemExit(f"captions refused without each caption's reason: {submitted.text}")
            return {"captions": "refused", "tokens": counts["counts"], "reasons": error["details"]}
        submitted.raise_for_status()
        job_id = submitted.json()["id"]
        status = finished(client, job_id)
        records = client.get(f"/v1/jobs/{job_id}/samples", params={"limit": 500}).raise_for_status().json()["items"]
        if status["state"] != "done" or len({record["pair_id"] for record in records}) != status["total"]:
            raise SystemExit(f"a job of captions ended without every pair and drop on record: {status}, {records}")
        drops = [record["rejection"] for record in records if (record["rejection"] or {}).get("stage") == "rewrite"]
        if any(drop["numbers"].get("tokens_by", counts["model_id"]) != counts["model_id"] for drop in drops):
            raise SystemExit(f"a rewrite was counted by something other than the generation service: {drops}")
        return {"captions": status["state"], "tokens": counts["counts"], "records": len(records), "drops": len(drops)}


ENDED = {"done", "cancelled"}
CRASH_COPIES = 6  # examples/job.json's pairs, each this many times with its own seed: a job long enough to hit


def container(compose: list[str], env: dict[str, str], service: str) -> str:
    out = subprocess.run(
        [*compose, "-p", PROJECT, *FILES, "ps", "-q", service], cwd=ROOT, env=env, capture_output=True, text=True
    )
    return out.stdout.strip()


def inspect(container_id: str, template: str) -> str:
    out = subprocess.run(["docker", "inspect", "-f", template, container_id], capture_output=True, text=True)
    return out.stdout.strip()


def patiently(client: httpx.Client, url: str, deadline: float, **params: str | int) -> dict[str, Any]:
    """GET as a client should while Redis restarts: a 503 is asked again after its Retry-After."""
    while True:
        response = client.get(url, params=params)
        if response.status_code != 503 or time.monotonic() > deadline:
            body: dict[str, Any] = response.raise_for_status().json()
            return body
        time.sleep(float(response.headers.get("Retry-After", "1")))


def every_record_id(client: httpx.Client, job_id: str, deadline: float) -> list[str]:
    ids: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = patiently(client, f"/v1/jobs/{job_id}/samples", deadline, offset=offset, limit=500)
        ids += [record["pair_id"] for record in page["items"]]
        offset = page["next_offset"]
    return ids


def survive_crashes(compose: list[str], env: dict[str, str], gateway: str) -> dict[str, object]:
    """An operator's bad day, for real: while a job runs, the worker's main Celery process is SIGKILLed from the
    host (its container exits 137 and Docker restarts it: ``restart: unless-stopped``), then Redis is restarted
    (append-only file on). The job still ends with every pair it was given on record, each exactly once."""
    job = json.loads((ROOT / "examples/job.json").read_text())
    pairs = [
        {**pair, "id": f"{pair['id']}-{copy}", "seed": pair["seed"] + 1000 * copy}
        for copy in range(CRASH_COPIES)
        for pair in job["pairs"]
    ]
    worker, redis = container(compose, env, "worker"), container(compose, env, "redis")
    restarts = int(inspect(worker, "{{.RestartCount}}"))
    with httpx.Client(base_url=gateway, timeout=60) as client:
        job_id = client.post("/v1/jobs", json={"pairs": pairs}).raise_for_status().json()["id"]
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while client.get(f"/v1/jobs/{job_id}").raise_for_status().json()["done"] < 3:
            if time.monotonic() > deadline:
                raise SystemExit(f"job {job_id} did not start")
            time.sleep(0.2)
        done_at_kill = client.get(f"/v1/jobs/{job_id}").json()["done"]
        os.kill(int(inspect(worker, "{{.State.Pid}}")), signal.SIGKILL)
        while int(inspect(worker, "{{.RestartCount}}")) == restarts or inspect(worker, "{{.State.Running}}") != "true":
            if time.monotonic() > deadline:
                raise SystemExit("Docker did not restart the killed worker")
            time.sleep(0.5)
        done_at_redis_restart = patiently(client, f"/v1/jobs/{job_id}", deadline)["done"]
        if done_at_redis_restart >= len(pairs):
            raise SystemExit("the job ended before Redis was restarted: make it longer (CRASH_COPIES)")
        subprocess.run(["docker", "restart", "--time", "10", redis], check=True, capture_output=True)
        while (status := patiently(client, f"/v1/jobs/{job_id}", deadline))["state"] not in ENDED:
            if time.monotonic() > deadline:
                raise SystemExit(f"job {job_id} did not finish after the crashes: {status}")
            time.sleep(2)
        ids = every_record_id(client, job_id, deadline)
    say(
        f"crashes: the worker killed at {done_at_kill} of {len(pairs)} done, Redis restarted at"
        f" {done_at_redis_restart}: {status['state']}"
    )
    if status["state"] != "done" or status["done"] != status["total"] or status["total"] != len(pairs):
        raise SystemExit(f"the job did not account for its pairs after the crashes: {status}")
    if sorted(ids) != sorted(pair["id"] for pair in pairs):
        missing = sorted({pair["id"] for pair in pairs} - set(ids))
        raise SystemExit(f"records after the crashes: {len(ids)} for {len(pairs)} pairs; missing {missing}")
    return {
        "pairs": len(pairs),
        "done_at_kill": done_at_kill,
        "done_at_redis_restart": done_at_redis_restart,
        "accepted": status["accepted"],
        "records": len(ids),
    }


def check_llava_export(gateway: str, job_id: str) -> int:
    """The export as LLaVA's trainer reads it: a JSON list whose every ``image`` opens under the image folder."""
    with httpx.Client(base_url=gateway, timeout=120) as client:
        response = client.get(f"/v1/jobs/{job_id}/export", params={"format": "llava"})
        response.raise_for_status()
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    [listing] = [name for name in archive.namelist() if name.endswith(".json")]
    entries = json.loads(archive.read(listing))
    folder = str(Path(listing).parent).removeprefix(".")
    for entry in entries:
        assert entry["conversations"][0]["value"].startswith("<image>\n"), entry
        name = f"{folder}/{entry['image']}".lstrip("/")
        with Image.open(io.BytesIO(archive.read(name))) as image:
            image.verify()
    return len(entries)


class Laps:
    """Seconds per phase, said as they pass and kept for out/compose-test.json."""

    def __init__(self, into: dict[str, object]) -> None:
        self.into = into
        self.mark = time.monotonic()

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.into[phase] = round(now - self.mark, 1)
        say(f"{phase}: {now - self.mark:.0f} s")
        self.mark = now


OVERRIDES = ["docker-compose.cpu.yml", "docker-compose.gpu.yml", "docker-compose.one-gpu.yml"]


def check_files(compose: list[str]) -> None:
    """Every override with the base, and the base with the models-fetch profile, as this Compose reads them
    (the GPU shapes cannot run here, but each Compose must accept them)."""
    shapes = [["-f", "docker-compose.yml", "-f", override] for override in OVERRIDES]
    shapes.append(["-f", "docker-compose.yml", "--profile", "fetch"])
    for shape in shapes:
        check = subprocess.run([*compose, "-p", PROJECT, *shape, "config", "-q"], cwd=ROOT, capture_output=True)
        if check.returncode != 0:
            raise SystemExit(f"{shlex.join(compose)} rejects {shlex.join(shape)}: {check.stderr.decode()}")


def host_address() -> str:
    """This host's address on Docker's default bridge, which a container on any of the engine's networks reaches."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True, check=True)
    return out.stdout.split()[3].split("/")[0]


def fill_models_volume(compose: list[str], env: dict[str, str]) -> int:
    """The one-shot ``models-fetch`` service as written (fetch the reference profile into the models volume, then
    verify it there), against a hub on this host with the hub's layout in place of huggingface.co: every source
    of the reference manifest published as one small file per pattern. Returns the files it downloaded."""
    sys.path.insert(0, str(ROOT))
    from spotdiff.weights import load_manifest
    from tests.weights.fake_hub import FakeHub, running

    hub = FakeHub()
    wanted: set[str] = set()
    for source in load_manifest("reference").sources:
        files = {pattern.replace("*", "stand-in"): f"{source.name} {pattern}".encode() for pattern in source.include}
        hub.publish(source.repo_id, files, lfs={name for name in files if name.endswith((".safetensors", ".pth"))})
        wanted |= {f"{source.repo_id}/{name}" for name in files}
    with running(hub, host="0.0.0.0") as url:
        endpoint = f"http://{host_address()}:{url.rsplit(':', 1)[1]}"
        run = [*compose, "-p", PROJECT, *FILES, "--profile", "fetch", "run", "--rm", "-e", f"HF_ENDPOINT={endpoint}"]
        fetched = subprocess.run([*run, "models-fetch"], cwd=ROOT, env=env)
    if fetched.returncode != 0:
        raise SystemExit("the models-fetch one-shot failed")
    if set(hub.downloads) != wanted:
        raise SystemExit(f"models-fetch downloaded {sorted(hub.downloads)}, not {sorted(wanted)}")
    return len(hub.downloads)


def run_stack(compose: list[str], redis_image: str, laps: Laps, crashes: bool) -> dict[str, object]:
    """One Compose: the models volume filled by its one-shot, `up`, every health check, the job through the
    gateway, its LLaVA export checked, (with ``crashes``) a job through a killed worker and a Redis restart,
    `down -v`."""
    port = free_port()
    env = {**os.environ, "SPOTDIFF_REDIS_IMAGE": redis_image, "SPOTDIFF_PORT": str(port)}
    gateway = f"http://127.0.0.1:{port}"
    outcome: dict[str, object] = {}
    try:
        outcome["models_fetched"] = fill_models_volume(compose, env)
        laps.lap("models_fetch_s")
        # `up` waits for the dependencies' health checks itself (Compose 1.29 fails it on an unhealthy one)
        up = subprocess.run([*compose, "-p", PROJECT, *FILES, "up", "-d", "--no-build"], cwd=ROOT, env=env)
        if up.returncode != 0:
            subprocess.run([*compose, "-p", PROJECT, *FILES, "logs", "--tail", "40"], cwd=ROOT, env=env)
            raise SystemExit("the stack did not start")
        wait_healthy(compose, env)
        laps.lap("healthy_s")
        job_id, status = run_job(gateway)
        laps.lap("job_s")
        say(f"job {job_id}: {status['state']}, {status['accepted']} accepted of {status['total']}")
        if status["state"] != "done" or not status["accepted"]:
            raise SystemExit(f"the job did not end with samples: {status}")
        samples = check_llava_export(gateway, job_id)
        laps.lap("export_s")
        outcome.update(job=status["state"], accepted=status["accepted"], llava_samples=samples)
        outcome.update(run_captions(gateway))
        laps.lap("captions_s")
        if crashes:
            outcome["crashes"] = survive_crashes(compose, env, gateway)
            laps.lap("crashes_s")
    finally:
        subprocess.run([*compose, "-p", PROJECT, *FILES, "down", "-v", "--timeout", "30"], cwd=ROOT, env=env)
        laps.lap("down_s")
    return outcome


def main() -> int:
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        print("no Docker engine answers (start dockerd, or point DOCKER_HOST at one)", file=sys.stderr)
        return 3
    composes = compose_commands()
    say("composes: " + "; ".join(f"{shlex.join(command)} ({version})" for command, version in composes))
    times: dict[str, object] = {}
    runs: dict[str, dict[str, object]] = {}
    start = time.monotonic()
    laps = Laps(times)
    try:
        wheelhouse = ROOT / ".cache" / "wheelhouse"
        fill_wheelhouse(wheelhouse)
        laps.lap("wheelhouse_s")
        with served(wheelhouse) as url:
            redis_image = build_images(url)
        laps.lap("build_s")
        for command, version in composes:
            say(f"the stack under {version}")
            check_files(command)
            run: dict[str, object] = {"command": shlex.join(command)}
            runs[version] = run
            laps.into = run
            run.update(run_stack(command, redis_image, laps, crashes=command == composes[0][0]))
    finally:
        times["total_s"] = round(time.monotonic() - start, 1)
        times["runs"] = runs
        (ROOT / "out").mkdir(exist_ok=True)
        (ROOT / "out" / "compose-test.json").write_text(json.dumps(times, indent=2) + "\n")
    say(f"passed in {times['total_s']} s: {json.dumps(times)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
