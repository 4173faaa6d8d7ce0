"""`bench/gpu.py --dry-run`: the GPU benchmark's own code, on the tiny models on the CPU, so it cannot rot
before a GPU runs it. Figures at tiny size mean nothing; that every figure is there and comes from real work does."""

import json
import math
from pathlib import Path

import pytest

from bench import gpu
from spotdiff.settings import SERVICE_NAMES, Settings


def test_the_dry_run_measures_every_figure_the_gpu_run_reports(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOTDIFF_TINY_DIR", str(tiny_dir))
    out = tmp_path / "bench-gpu.json"
    results = gpu.main(["--dry-run", "--out", str(out)])
    assert json.loads(out.read_text()) == results
    assert results["workload"]["dry_run"] is True
    settings = Settings(profile="tiny")
    assert set(results["readiness"]) == set(results["throughput"]) == set(SERVICE_NAMES)
    for name in SERVICE_NAMES:
        assert results["readiness"][name]["ready_s"] > 0
        rows = results["throughput"][name]
        assert set(rows) == {"1", str(settings.service(name).max_batch_size)}
        assert all(row["items_per_s"] > 0 and row["peak_mib"] > 0 for row in rows.values())
    p2p = results["p2p"]
    assert all(p2p[key] > 0 for key in ("plain_s", "p2p_s", "reference_style_s"))
    assert math.isclose(p2p["p2p_over_plain"], p2p["p2p_s"] / p2p["plain_s"], rel_tol=0.02)
    pair = results["pair"]
    # the pair went through every stage (the tiny profile's thresholds pass it), each one timed
    assert pair["spotdiff"]["status"] == "accepted"
    for stage in ("generate", "pair_filter", "proposals", "difference_areas", "region_labels", "difference_caption"):
        assert pair["spotdiff"][stage] > 0, stage
    assert set(pair["reference_style"]) == {"generate", "regions", "scoring", "captioning"}
    assert all(value > 0 for value in pair["reference_style"].values())
    assert math.isclose(
        pair["spotdiff_over_reference_style"], pair["spotdiff_s"] / pair["reference_style_s"], rel_tol=0.02
    )


def test_the_gpu_run_refuses_a_machine_without_cuda_before_building_anything(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as refused:
        gpu.main(["--models", str(tmp_path / "models"), "--out", str(tmp_path / "out.json")])
    assert refused.value.code == 2
    assert not (tmp_path / "models").exists()
