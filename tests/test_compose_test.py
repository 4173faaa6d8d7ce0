"""`make compose-test`'s choice of Compose: every working one found, each Compose once, a named one that does not
work refused before anything is built."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def compose_test() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compose_test", ROOT / "docker" / "compose_test.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_compose(folder: Path, name: str, version: str) -> Path:
    """An executable that answers `version` as a Compose does, and fails anything else."""
    path = folder / name
    path.write_text(f'#!/bin/sh\n[ "$1" = version ] && echo "{version}" && exit 0\nexit 1\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_named_composes_run_in_order_each_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v2 = fake_compose(tmp_path, "v2", "Docker Compose version 2.26.1")
    plugin = fake_compose(tmp_path, "plugin", "Docker Compose version 2.26.1")  # the same Compose again
    old = fake_compose(tmp_path, "old", "docker-compose version 1.29.2, build unknown")
    monkeypatch.setenv("SPOTDIFF_COMPOSE", f"{v2},{plugin} ,{old}")
    assert compose_test().compose_commands() == [
        ([str(v2)], "Docker Compose version 2.26.1"),
        ([str(old)], "docker-compose version 1.29.2, build unknown"),
    ]


@pytest.mark.parametrize("named", ["/nonexistent/docker-compose", "false", "true"])
def test_a_named_compose_that_does_not_answer_is_refused(named: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTDIFF_COMPOSE", named)
    with pytest.raises(SystemExit, match="not a working Compose"):
        compose_test().compose_commands()


def test_without_a_name_every_compose_on_the_path_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = fake_compose(tmp_path, "docker-compose", "docker-compose version 1.29.2, build unknown")
    fake_compose(tmp_path, "docker", "not a Compose")  # `docker compose version` fails: no plugin
    monkeypatch.delenv("SPOTDIFF_COMPOSE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    module = compose_test()
    monkeypatch.setattr(module, "ROOT", tmp_path)  # no .cache/compose-v2 binary there
    assert module.compose_commands() == [([str(old)], "docker-compose version 1.29.2, build unknown")]
