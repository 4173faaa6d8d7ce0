"""`spotdiff models fetch` and `verify` as a user runs them, against a hub with the real hub's layout on this
machine (huggingface_hub itself does the downloading): every file checked, a lock written and honoured."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spotdiff.weights import LOCK_FILE
from tests.weights.fake_hub import FakeHub, running

WEIGHTS_V1 = b"\x00weights-one" * 1000
WEIGHTS_V2 = b"\x00weights-two" * 1000
CONFIG = b'{"hidden_size": 8}'


def manifest(tmp_path: Path) -> Path:
    file = tmp_path / "manifest.json"
    sources = [
        {
            "name": "net",
            "service": "regions",
            "repo_id": "acme/net",
            "revision": "main",
            "path": "net",
            "include": ["checkpoints/net.pth"],
            "settings": {"model": "{models}/net/checkpoints/net.pth"},
        },
        {
            "name": "vlm",
            "service": "captioning",
            "repo_id": "acme/vlm",
            "revision": "main",
            "path": "vlm",
            "include": ["*.json", "*.safetensors"],
            "settings": {"model": "{models}/vlm"},
        },
    ]
    file.write_text(json.dumps({"profile": "test", "sources": sources}))
    return file


@pytest.fixture
def hub() -> Iterator[tuple[FakeHub, str]]:
    hub = FakeHub()
    hub.publish(
        "acme/net", {"checkpoints/net.pth": WEIGHTS_V1, "README.md": b"not wanted"}, lfs={"checkpoints/net.pth"}
    )
    hub.publish(
        "acme/vlm",
        {"config.json": CONFIG, "model.safetensors": WEIGHTS_V2, "notes.txt": b"not wanted"},
        lfs={"model.safetensors"},
    )
    with running(hub) as url:
        yield hub, url


def spotdiff(
    *args: str, endpoint: str | None = None, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env["HF_HUB_OFFLINE"] = "1"  # as the Makefile and the images set it: fetch lifts it for itself
    env.update(env_extra or {})
    env["HF_HOME"] = str(Path(env.get("TMPDIR", "/tmp")) / "spotdiff-test-hf-home")
    command = [sys.executable, "-m", "spotdiff.cli", *args, *(["--endpoint", endpoint] if endpoint else [])]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def fetch(tmp_path: Path, url: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return spotdiff(
        "models",
        "fetch",
        "--manifest",
        str(manifest(tmp_path)),
        "--out",
        str(out),
        "--allow-network",
        *extra,
        endpoint=url,
    )


def verify(tmp_path: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return spotdiff("models", "verify", str(out), "--manifest", str(manifest(tmp_path)))


def test_fetch_takes_the_wanted_files_checks_them_and_writes_a_lock(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    fake, url = hub
    out = tmp_path / "models"
    result = fetch(tmp_path, url, out)
    assert result.returncode == 0, result.stderr
    assert (out / "net/checkpoints/net.pth").read_bytes() == WEIGHTS_V1
    assert (out / "vlm/model.safetensors").read_bytes() == WEIGHTS_V2
    assert (out / "vlm/config.json").read_bytes() == CONFIG
    assert not (out / "net/README.md").exists() and not (out / "vlm/notes.txt").exists()
    lock = json.loads((out / LOCK_FILE).read_text())
    by_name = {source["name"]: source for source in lock["sources"]}
    assert by_name["net"]["commit"] == fake.repos["acme/net"].branches["main"]
    assert by_name["vlm"]["files"]["config.json"]["sha256"] == hashlib.sha256(CONFIG).hexdigest()
    assert by_name["vlm"]["files"]["model.safetensors"]["size"] == len(WEIGHTS_V2)
    # the settings that point the services at what was fetched
    assert f"SPOTDIFF_REGIONS__MODEL={out.resolve()}/net/checkpoints/net.pth" in result.stdout
    assert f"SPOTDIFF_CAPTIONING__MODEL={out.resolve()}/vlm" in result.stdout
    assert verify(tmp_path, out).returncode == 0


def test_fetch_as_the_compose_one_shot_runs_it(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    """docker-compose.yml passes ``HF_TOKEN: ${HF_TOKEN:-}`` (empty when the user has none) and a mirror comes as
    ``HF_ENDPOINT``: an empty token is no token, not a ``Bearer`` header with nothing in it."""
    _, url = hub
    out = tmp_path / "models"
    args = ["models", "fetch", "--manifest", str(manifest(tmp_path)), "--out", str(out), "--allow-network"]
    result = spotdiff(*args, env_extra={"HF_TOKEN": "", "HF_ENDPOINT": url})
    assert result.returncode == 0, result.stderr
    assert (out / "vlm/model.safetensors").read_bytes() == WEIGHTS_V2
    assert verify(tmp_path, out).returncode == 0


def test_a_second_fetch_downloads_nothing_that_is_already_there(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    fake, url = hub
    out = tmp_path / "models"
    assert fetch(tmp_path, url, out).returncode == 0
    first = len(fake.downloads)
    assert first == 3
    (out / "vlm/config.json").write_bytes(b"{}")  # a damaged file is fetched again, the rest kept
    assert fetch(tmp_path, url, out).returncode == 0
    assert fake.downloads[first:] == ["acme/vlm/config.json"]
    assert (out / "vlm/config.json").read_bytes() == CONFIG


def test_a_file_that_is_not_what_the_hub_says_is_refused_and_removed(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    fake, url = hub
    commit = fake.repos["acme/vlm"].resolve("main")
    assert commit is not None
    commit.served["model.safetensors"] = b"\x00tampered" * 1000
    out = tmp_path / "models"
    result = fetch(tmp_path, url, out)
    assert result.returncode == 2
    assert "model.safetensors" in result.stderr and "sha256" in result.stderr
    assert not (out / "vlm/model.safetensors").exists()
    assert not (out / LOCK_FILE).exists()


def test_a_non_lfs_file_is_checked_against_its_git_blob_id(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    fake, url = hub
    commit = fake.repos["acme/vlm"].resolve("main")
    assert commit is not None
    commit.served["config.json"] = b'{"hidden_size": 9}'
    result = fetch(tmp_path, url, tmp_path / "models")
    assert result.returncode == 2
    assert "config.json" in result.stderr and "blob" in result.stderr


def test_fetching_a_lock_gets_its_commits_though_the_branch_moved(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    fake, url = hub
    first = tmp_path / "first"
    assert fetch(tmp_path, url, first).returncode == 0
    fake.publish("acme/net", {"checkpoints/net.pth": b"\x00newer" * 1000}, lfs={"checkpoints/net.pth"})
    again = tmp_path / "again"
    assert fetch(tmp_path, url, again, "--lock", str(first / LOCK_FILE)).returncode == 0
    assert (again / "net/checkpoints/net.pth").read_bytes() == WEIGHTS_V1
    latest = tmp_path / "latest"
    assert fetch(tmp_path, url, latest).returncode == 0
    assert (latest / "net/checkpoints/net.pth").read_bytes() == b"\x00newer" * 1000


def test_verify_names_each_missing_or_changed_file(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    _, url = hub
    out = tmp_path / "models"
    assert fetch(tmp_path, url, out).returncode == 0
    (out / "net/checkpoints/net.pth").write_bytes(WEIGHTS_V1[:-1] + b"!")
    (out / "vlm/config.json").unlink()
    result = verify(tmp_path, out)
    assert result.returncode == 1
    assert "net/checkpoints/net.pth: sha256 differs" in result.stderr
    assert "vlm/config.json: missing" in result.stderr
    assert verify(tmp_path, tmp_path / "empty").returncode == 1


def test_a_pattern_that_matches_nothing_fails_naming_it(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    fake, url = hub
    fake.publish("acme/vlm", {"config.json": CONFIG})  # the weights went away upstream
    result = fetch(tmp_path, url, tmp_path / "models")
    assert result.returncode == 2
    assert "'*.safetensors'" in result.stderr


def test_fetch_uses_the_network_only_when_allowed(tmp_path: Path) -> None:
    result = spotdiff("models", "fetch", "--out", str(tmp_path / "models"))
    assert result.returncode == 3
    assert "--allow-network" in result.stderr
    assert not (tmp_path / "models").exists()
