"""The command line as a user meets it: every mistake is one line naming the file, line or setting, with a
documented exit code, and no traceback unless --debug asks for one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

import spotdiff
from spotdiff.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_MISSING, explain
from spotdiff.protocol.jobs import CaptionPair
from spotdiff.runner import start_folder
from spotdiff.storage import ArtifactStore


def spotdiff_cli(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPOTDIFF_")}
    # an empty checkpoint folder: a command that reached model work would start building there
    environment.update({"SPOTDIFF_TINY_DIR": str(tmp_path / "tiny"), **env})
    command = [sys.executable, "-m", "spotdiff.cli", *args]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120, cwd=tmp_path)


def one_clear_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_missing_input_file(tmp_path: Path) -> None:
    result = spotdiff_cli("run", "nope.jsonl", "--out", "X", tmp_path=tmp_path)
    one_clear_line(result, EXIT_BAD_INPUT, "spotdiff run:", "nope.jsonl", "no such file")
    assert not (tmp_path / "tiny").exists() and not (tmp_path / "X").exists()


def test_export_and_report_of_what_is_no_run_folder(tmp_path: Path) -> None:
    one_clear_line(spotdiff_cli("export", "missing", "--format", "llava", tmp_path=tmp_path), EXIT_BAD_INPUT, "missing")
    (tmp_path / "samples.jsonl").write_text('{"id": "a"}\n{"id": "b", "sou')
    result = spotdiff_cli("export", "samples.jsonl", "--format", "llava", tmp_path=tmp_path)
    one_clear_line(result, EXIT_BAD_INPUT, "samples.jsonl", "run folder")
    one_clear_line(spotdiff_cli("report", "samples.jsonl", tmp_path=tmp_path), EXIT_BAD_INPUT, "run folder")


def test_a_truncated_record_names_the_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    start_folder(ArtifactStore(str(run)), [CaptionPair(id="dog-cat", source="A dog", target="A cat")])
    (run / "records").mkdir(exist_ok=True)
    (run / "records" / "dog-cat.json").write_text('{"id": "dog-cat", "status": "acc')
    result = spotdiff_cli("export", "run", "--format", "llava", tmp_path=tmp_path)
    one_clear_line(result, EXIT_BAD_INPUT, "records", "no sample record")


def test_a_bad_setting_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"source": "A dog", "target": "A cat"}) + "\n")
    result = spotdiff_cli("run", "pairs.jsonl", "--out", "X", tmp_path=tmp_path, SPOTDIFF_PROFILE="big")
    one_clear_line(result, EXIT_BAD_INPUT, "SPOTDIFF_PROFILE='big'", "tiny", "reference")
    result = spotdiff_cli("report", "x", tmp_path=tmp_path, SPOTDIFF_PIPELINE__CONCURRENCY="many")
    one_clear_line(result, EXIT_BAD_INPUT, "SPOTDIFF_PIPELINE__CONCURRENCY='many'")


def test_strict_stops_at_the_first_bad_line_before_any_model_work(tmp_path: Path) -> None:
    good = json.dumps({"source": "A dog on the grass", "target": "A cat on the grass"})
    (tmp_path / "pairs.jsonl").write_text(f"{good}\n{{not json\n{good.replace('dog', 'cow')}\n[1]\n")
    result = spotdiff_cli("run", "pairs.jsonl", "--out", "X", "--strict", tmp_path=tmp_path)
    one_clear_line(result, EXIT_BAD_INPUT, "pairs.jsonl:2:", "not valid JSON", "--strict")
    assert not (tmp_path / "tiny").exists() and not (tmp_path / "X").exists()


def test_a_file_without_a_single_pair(tmp_path: Path) -> None:
    (tmp_path / "pairs.jsonl").write_text("{not json\n\n")
    result = spotdiff_cli("run", "pairs.jsonl", "--out", "X", tmp_path=tmp_path)
    one_clear_line(result, EXIT_BAD_INPUT, "no caption pairs", "line 1")


def test_debug_shows_the_traceback_before_or_after_the_command(tmp_path: Path) -> None:
    for args in (("--debug", "run", "nope.jsonl", "--out", "X"), ("run", "nope.jsonl", "--out", "X", "--debug")):
        result = spotdiff_cli(*args, tmp_path=tmp_path)
        assert result.returncode != 0 and "Traceback" in result.stderr, args


def test_version_and_defaults_in_help(tmp_path: Path) -> None:
    version = spotdiff_cli("--version", tmp_path=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"spotdiff {spotdiff.__version__}"
    serve = spotdiff_cli("serve", "--help", tmp_path=tmp_path)
    assert "(default: 8000)" in serve.stdout and "(default: 8101)" in serve.stdout
    assert "(default: None)" not in serve.stdout


@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        (ModuleNotFoundError("No module named 'torch'", name="torch"), EXIT_MISSING, ("torch", "spotdiff[models]")),
        (redis.ConnectionError("Error 111 connecting to 127.0.0.1:1"), EXIT_MISSING, ("Redis", "SPOTDIFF_REDIS_URL")),
        (PermissionError(13, "Permission denied", "/out"), EXIT_BAD_INPUT, ("/out", "Permission denied")),
        (RuntimeError("CUDA out of memory"), EXIT_FAILED, ("RuntimeError", "CUDA out of memory", "--debug")),
    ],
)
def test_each_kind_of_error_has_its_code_and_says_what_to_do(
    error: Exception, code: int, words: tuple[str, ...]
) -> None:
    got, message = explain(error)
    assert got == code
    assert all(word in message for word in words), message


def test_serve_without_redis_says_so_before_starting_anything(tmp_path: Path) -> None:
    result = spotdiff_cli("serve", tmp_path=tmp_path, SPOTDIFF_REDIS_URL="redis://127.0.0.1:1/0")
    one_clear_line(result, EXIT_MISSING, "redis://127.0.0.1:1/0", "SPOTDIFF_REDIS_URL")
    assert not (tmp_path / "tiny").exists()


def test_full_size_models_refuse_an_unknown_source_before_writing(tmp_path: Path) -> None:
    result = spotdiff_cli("models", "full-size", "--out", "full", "--only", "sdxl-bas", tmp_path=tmp_path)
    one_clear_line(result, EXIT_BAD_INPUT, "models full-size:", "sdxl-bas")
    assert not (tmp_path / "full").exists()
