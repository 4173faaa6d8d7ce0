"""`spotdiff models full-size`: the real shapes (counted on the meta device, against the published sizes) and a
build that is never taken for finished before it is. Building the 21 GB for real is `make test-full`'s part."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import torch

from services import full_size
from spotdiff.weights import load_manifest


def parameters(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def test_the_language_models_keep_vicuna_7b_width_and_llava_next_its_whole_vision_side() -> None:
    from transformers import LlamaForCausalLM, LlavaNextForConditionalGeneration

    from services.captioning.full_size import llava_next_config
    from services.rewriting.full_size import LAYERS, vicuna_7b_config

    with torch.device("meta"):
        vicuna = LlamaForCausalLM(vicuna_7b_config(layers=32))
        llava = LlavaNextForConditionalGeneration(llava_next_config(image_token=32000, layers=32))
        reduced = LlamaForCausalLM(vicuna_7b_config())
    assert parameters(vicuna) == 6_738_415_616  # vicuna-7b-v1.5 (Llama 2 7B)
    assert parameters(llava.model.vision_tower) == 303_507_456  # CLIP ViT-L/14 at 336 px
    assert parameters(llava) == 7_063_431_168  # llava-v1.6-vicuna-7b
    layer = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096  # attention, MLP, two norms
    assert parameters(reduced) == parameters(vicuna) - (32 - LAYERS) * layer


def fake_builders(monkeypatch: pytest.MonkeyPatch, fail: str | None = None) -> None:
    def write(out_dir: Path, seed: int) -> Path:
        if out_dir.name.startswith(f".{fail}."):
            raise RuntimeError("out of disk")
        (out_dir / "weights.bin").write_bytes(bytes([seed]))
        return out_dir

    monkeypatch.setattr(full_size, "import_module", lambda name: type("M", (), {"build": staticmethod(write)}))
    monkeypatch.setattr(full_size, "BUILDERS", {name: "any:build" for name in full_size.BUILDERS})


def test_every_manifest_source_has_a_builder() -> None:
    assert set(full_size.BUILDERS) == {source.name for source in load_manifest("reference").sources}


def test_the_marker_comes_only_with_every_source_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_builders(monkeypatch)
    manifest = load_manifest("reference")
    full_size.build_all(tmp_path, seed=3, only=("sam-vit-h",))
    assert not full_size.is_complete(tmp_path)
    written = full_size.build_all(tmp_path, seed=3)
    assert full_size.is_complete(tmp_path)
    assert set(written) == {source.name for source in manifest.sources}
    for source in manifest.sources:
        folder = tmp_path / source.path
        assert (folder / "weights.bin").read_bytes() == b"\x03"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # readable by a service running as another user
    with pytest.raises(LookupError, match="no-such-model"):
        full_size.build_all(tmp_path, only=("no-such-model",))
    assert full_size.is_complete(tmp_path)  # a refused call changed nothing


def test_a_failed_build_leaves_no_marker_and_no_half_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_builders(monkeypatch)
    full_size.build_all(tmp_path)
    fake_builders(monkeypatch, fail="segment-anything")
    with pytest.raises(RuntimeError, match="out of disk"):
        full_size.build_all(tmp_path)
    assert not full_size.is_complete(tmp_path)
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]
