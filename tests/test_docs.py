"""The README's examples run: every bash or python block says how it is checked, and the shell ones run here.

Markers (an HTML comment on the line before the block): ``ci`` (.ci/run runs it), ``shell`` (run here, from
the repository root), ``serve`` / ``serve-python`` (run against `spotdiff serve` by tests/gateway/test_serve.py),
``caption-pair`` (parsed), ``none (why)`` (cannot run on this machine; the reason names what checks it instead).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from spotdiff.protocol import CaptionPair
from spotdiff.settings import Settings

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(
    r"(?:<!-- example: (?P<kind>[a-z-]+)(?: \((?P<why>[^)]*(?:\([^)]*\)[^)]*)*)\))? -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)```",
    re.S,
)


@dataclass(frozen=True)
class Example:
    kind: str | None
    why: str | None
    lang: str
    code: str


def examples(path: Path = README) -> list[Example]:
    return [Example(m["kind"], m["why"], m["lang"], m["code"]) for m in BLOCK.finditer(path.read_text())]


def test_every_command_block_says_how_it_is_checked() -> None:
    found = examples()
    commands = [example for example in found if example.lang in ("bash", "python")]
    assert len(commands) >= 8
    for example in commands:
        assert example.kind in ("ci", "shell", "serve", "serve-python", "none"), example.code[:80]
        if example.kind == "none":
            assert example.why, "a block that does not run says why and what checks it instead"


def test_the_example_pair_is_a_valid_caption_pair() -> None:
    (pair,) = [example for example in examples() if example.kind == "caption-pair"]
    CaptionPair.model_validate(json.loads(pair.code))


def test_the_real_weights_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    (block,) = [e for e in examples() if e.kind == "shell" and "SPOTDIFF_PROFILE=reference" in e.code]
    for line in block.code.splitlines():
        for assignment in line.removeprefix("export ").split():
            name, _, value = assignment.partition("=")
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.profile == "reference" and settings.regions.model_type == "vit_h"
    assert settings.pipeline.pair_cosine_max == 0.98


def test_the_real_weights_block_points_where_the_fetch_puts_the_files() -> None:
    """Every model path of the README's block is the one `spotdiff models fetch --out /models` writes, so the
    block runs as written against a fetched directory (`make test-full` runs it on full-size random weights)."""
    from spotdiff.weights import load_manifest, service_environment

    (block,) = [e for e in examples() if e.kind == "shell" and "SPOTDIFF_PROFILE=reference" in e.code]
    written = dict(
        assignment.partition("=")[::2]
        for line in block.code.splitlines()
        for assignment in line.removeprefix("export ").split()
    )
    fetched = service_environment(load_manifest("reference"), "/models")
    assert {key: written.get(key) for key in fetched} == fetched


@pytest.mark.parametrize(
    "example",
    [e for e in examples() if e.kind == "shell" and "SPOTDIFF_PROFILE=reference" not in e.code],
    ids=lambda e: e.code.split()[0],
)
def test_shell_examples_run(example: Example, tiny_dir: Path) -> None:
    tool = example.code.split()[0]
    if not tool.startswith(".venv/") and shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    env = {**os.environ, "SPOTDIFF_TINY_DIR": str(tiny_dir), "SPOTDIFF_PROFILE": "tiny"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example.code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_test_semantics_md_cites_exists() -> None:
    """docs/semantics.md names, for each difference, the test that shows it: each one is there."""
    text = (ROOT / "docs" / "semantics.md").read_text(encoding="utf-8")
    cited = re.findall(r"`(tests/[\w/]+\.py)((?:::\w+)*)`", text)
    assert len(cited) >= 10
    for path, names in cited:
        source = (ROOT / path).read_text(encoding="utf-8")
        for name in filter(None, names.split("::")):
            assert re.search(rf"^\s*(def|class|async def) {name}\b", source, re.MULTILINE), f"{path}::{name}"
