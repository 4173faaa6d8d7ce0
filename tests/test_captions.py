"""Single captions into caption pairs (the weight-free rewriter) and on through a run: `spotdiff pairs` as a
user runs it, drops with their reasons, the same seed giving the same pairs, and a run's samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from spotdiff.captions import (
    Dropped,
    caption_line,
    estimated_tokens,
    pairs_from_captions,
    read_captions,
    rewrite_pair_id,
    unpaired,
)
from spotdiff.clients import ServiceClients
from spotdiff.imgdiff.objects import changed_objects
from spotdiff.protocol import SampleRecord
from spotdiff.runner import read_pairs, run_embedded
from spotdiff.settings import Settings

CAPTIONS = Path(__file__).parent.parent / "examples" / "captions.txt"


async def test_each_caption_gives_its_rewrites_checked_and_seeded() -> None:
    captions = read_captions(["A dog on the grass", "", "The sky at night", "A cat on a sofa"])
    assert captions == [(1, "A dog on the grass"), (3, "The sky at night"), (4, "A cat on a sofa")]
    pairs, dropped = await pairs_from_captions(captions, rewrites=3)
    assert {pair.id for pair in pairs} <= {f"l{line}-r{k}" for line in (1, 4) for k in range(3)}
    assert [(drop.line, drop.reason) for drop in dropped if drop.reason == "no_known_noun"] == [(3, "no_known_noun")]
    assert len(pairs) + len(dropped) == 3 + 3 + 1  # the caption without a known noun is tried once
    for pair in pairs:
        assert changed_objects(pair.source, pair.target) == (pair.source_objects, pair.target_objects)
        assert pair.seed is not None
    again, _ = await pairs_from_captions(captions, rewrites=3)
    assert again == pairs
    other, _ = await pairs_from_captions(captions, rewrites=3, base_seed=1)
    assert [pair.target for pair in other] != [pair.target for pair in pairs]


async def test_a_pool_of_rewrites_answers_for_each_caption_that_gave_no_pair() -> None:
    captions = [(1, "A dog on the grass"), (2, "The sky at night"), (3, "A cat on a sofa")]
    pairs, dropped = await pairs_from_captions(captions, rewrites=2, interleave=True)
    assert [(drop.line, drop.reason) for drop in unpaired(dropped, pairs)] == [(2, "no_known_noun")]
    # a caption whose pairs the pool left out but that gave one is not a drop; one that gave none is, once
    failed = [Dropped(3, 0, "A cat on a sofa", "same_rewrite_again"), Dropped(3, 1, "A cat on a sofa", "too_long")]
    only_dog = [pair for pair in pairs if pair.id.startswith("l1-")]
    assert [(drop.line, drop.rewrite) for drop in unpaired([*dropped, *failed], only_dog)] == [(2, 0), (3, 0)]


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6))
def test_a_rewrite_pair_id_names_its_caption_line(line: int, number: int) -> None:
    assert caption_line(rewrite_pair_id(line, number)) == line


@given(st.text())
@example("l01-r0")  # not an id a rewrite gets: no leading zeros, ASCII digits only
@example("l\u0661-r0")
@example("l1-r0\n")
def test_any_other_id_names_no_caption_line(pair_id: str) -> None:
    line = caption_line(pair_id)
    assert line is None or rewrite_pair_id(line, int(pair_id.rpartition("-r")[2])) == pair_id


async def test_token_counts_are_estimated_with_the_encoders_start_and_end() -> None:
    assert estimated_tokens("A dog, on the grass.") == 7 + 2
    long = " ".join(["dog"] * 80)
    _, dropped = await pairs_from_captions([(1, f"A {long}")], rewrites=1)
    assert [drop.reason for drop in dropped] == ["too_long"] and dropped[0].numbers["tokens_max"] == 77


def test_spotdiff_pairs_writes_what_run_reads(tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    command = [sys.executable, "-m", "spotdiff.cli", "pairs", str(CAPTIONS), "--out", str(out), "--rewrites", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    pairs, errors = read_pairs(out)
    assert errors == [] and len(pairs) == 2 * len(CAPTIONS.read_text().splitlines())
    assert all(json.loads(line)["source_objects"] for line in out.read_text().splitlines())
    empty = tmp_path / "nothing.txt"
    empty.write_text("The sky at night\n")
    failed = subprocess.run(
        [*command[:4], str(empty), "--out", str(tmp_path / "x.jsonl")], capture_output=True, text=True
    )
    assert failed.returncode == 2 and "no caption gave a pair" in failed.stderr and "no_known_noun" in failed.stderr


async def test_a_run_from_captions(clients: ServiceClients, settings: Settings, tmp_path: Path) -> None:
    lines = [*CAPTIONS.read_text().splitlines(), "The sky at night"]  # the last gives no pair
    pairs, dropped = await pairs_from_captions(read_captions(lines))
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(pair.model_dump_json(exclude_none=True) + "\n" for pair in pairs))
    drops = [drop.record(settings.profile) for drop in dropped]
    summary = await run_embedded(source, tmp_path / "run", settings, progress=False, clients=clients, dropped=drops)
    records = [
        SampleRecord.model_validate_json(line) for line in (tmp_path / "run/samples.jsonl").read_text().splitlines()
    ]
    assert summary.pairs == len(records) == len(pairs) + 1 and summary.accepted >= 1
    (drop,) = [record for record in records if record.rejection and record.rejection.stage == "rewrite"]
    assert (drop.pair_id, drop.outcome, drop.source) == (f"l{len(lines)}-r0", "rewrite:no_known_noun", lines[-1])
    assert drop.provenance.rewrite is not None and drop.provenance.rewrite.rewriter == "lexicon"
    records = [record for record in records if record is not drop]
    by_id = {pair.id: pair for pair in pairs}
    for record in records:
        assert (record.source, record.target) == (by_id[record.pair_id].source, by_id[record.pair_id].target)
        assert record.source_objects == by_id[record.pair_id].source_objects


def test_spotdiff_run_takes_a_file_of_captions(tiny_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """As a user runs it: captions in, the pairs beside the run for review, and the samples of those pairs."""
    from spotdiff.cli import main

    monkeypatch.setenv("SPOTDIFF_TINY_DIR", str(tiny_dir))
    monkeypatch.setenv("SPOTDIFF_PROFILE", "tiny")
    monkeypatch.delenv("SPOTDIFF_REWRITER", raising=False)
    captions = tmp_path / "captions.txt"
    captions.write_text("A dog on the grass\nThe sky at night\nA red car parked on a city street\n")
    assert main(["run", str(captions), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    pairs, errors = read_pairs(tmp_path / "run/pairs.jsonl")
    assert errors == [] and [pair.id for pair in pairs] == ["l1-r0", "l3-r0"]
    records = [
        SampleRecord.model_validate_json(line) for line in (tmp_path / "run/samples.jsonl").read_text().splitlines()
    ]
    assert sorted(record.pair_id for record in records) == ["l1-r0", "l2-r0", "l3-r0"]
    assert {record.pair_id: record.outcome for record in records}["l2-r0"] == "rewrite:no_known_noun"
    assert "3 pairs:" in capsys.readouterr().out
