"""A tiny, seeded, random-weight SDXL checkpoint in diffusers' real on-disk layout.

Tests and the demo profile load it through `StableDiffusionXLPipeline.from_pretrained`, exactly as
they would load stabilityai/stable-diffusion-xl-base-1.0, so the service code path is the real one.
Only the sizes are tiny; the component classes, the tokenizer vocabulary and the scheduler settings
are SDXL base's.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
from pathlib import Path

from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from services.generation.full_size import sdxl_scheduler
from services.kit.checkpoints import seeded

CLIP_VOCAB_SIZE = 49408
CLIP_CONTEXT_LENGTH = 77
CLIP_BOS_ID = 49406  # "<|startoftext|>": the real id, pooling looks up the eos position by id
CLIP_EOS_ID = 49407  # "<|endoftext|>"
_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
# The slice of the merges file that CLIP's SimpleTokenizer uses: 49408 - 256 bytes * 2 - 2 specials.
_N_MERGES = CLIP_VOCAB_SIZE - 2 * 256 - 2

_TEXT_HIDDEN = 32
_TEXT_PROJECTION = 32
_TIME_EMBED_DIM = 8


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable-unicode table; its order fixes the first 256 vocab ids."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codepoints = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codepoints.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codepoints), strict=True))


def _open_clip_bpe_path() -> Path:
    """Locate the BPE merges open_clip ships, without paying the seconds `import open_clip` costs."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("open_clip_torch is needed for its shipped CLIP BPE vocabulary")
    return Path(next(iter(spec.submodule_search_locations))) / _BPE_FILE


def clip_bpe_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The real CLIP BPE vocabulary and merges, from the merges file open_clip ships.

    Uses the same slice and token order as open_clip's SimpleTokenizer, so ids match OpenAI CLIP's
    exactly and no hub download is needed.
    """
    lines = gzip.decompress(_open_clip_bpe_path().read_bytes()).decode("utf-8").split("\n")
    merges = [_merge_pair(line) for line in lines[1 : _N_MERGES + 1]]
    byte_tokens = list(_bytes_to_unicode().values())
    tokens = [
        *byte_tokens,
        *(token + "</w>" for token in byte_tokens),
        *(left + right for left, right in merges),
        "<|startoftext|>",
        "<|endoftext|>",
    ]
    if len(tokens) != CLIP_VOCAB_SIZE:
        raise ValueError(f"expected {CLIP_VOCAB_SIZE} CLIP tokens, built {len(tokens)}")
    return {token: index for index, token in enumerate(tokens)}, merges


def _merge_pair(line: str) -> tuple[str, str]:
    left, right = line.split()
    return left, right


def write_clip_bpe_tokenizer_files(out_dir: Path) -> tuple[Path, Path]:
    """Write the real CLIP BPE vocabulary as Hugging Face `vocab.json` + `merges.txt` into `out_dir`.

    These are the files a CLIP tokenizer folder on the hub holds (e.g. SDXL base's `tokenizer/`).
    Returns (vocab_path, merges_path).
    """
    vocab, merges = clip_bpe_vocab()
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = out_dir / "vocab.json", out_dir / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_path.write_text(
        "#version: 0.2\n" + "\n".join(f"{left} {right}" for left, right in merges) + "\n", encoding="utf-8"
    )
    return vocab_path, merges_path


def clip_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]], *, pad_token: str) -> CLIPTokenizer:
    """A CLIP tokenizer over the real vocab; SDXL's second tokenizer pads with "!" instead of eos."""
    return CLIPTokenizer(
        vocab=dict(vocab),
        merges=list(merges),  # type: ignore[arg-type]  # hinted list[str], but the BPE backend needs pairs
        model_max_length=CLIP_CONTEXT_LENGTH,
        pad_token=pad_token,
    )


def _text_encoder_config() -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=_TEXT_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=CLIP_CONTEXT_LENGTH,
        projection_dim=_TEXT_PROJECTION,
        bos_token_id=CLIP_BOS_ID,
        eos_token_id=CLIP_EOS_ID,
        pad_token_id=1,
    )


def _unet() -> UNet2DConditionModel:
    """SDXL's 3-level layout (no attention at the top level), with widths small enough for CPU tests."""
    return UNet2DConditionModel(
        sample_size=16,  # latent 16x16 -> 128x128 default image through the x8 VAE
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        norm_num_groups=8,  # must divide every block width
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2),
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=_TIME_EMBED_DIM,
        # 6 micro-conditioning time ids (size, crop, target size) + the pooled text_encoder_2 embedding
        projection_class_embeddings_input_dim=6 * _TIME_EMBED_DIM + _TEXT_PROJECTION,
        # the two text encoders' hidden states are concatenated
        cross_attention_dim=2 * _TEXT_HIDDEN,
    )


def _vae() -> AutoencoderKL:
    """Four levels, so latents are 1/8 of the image side as in the real SDXL VAE."""
    return AutoencoderKL(
        block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=128,
        scaling_factor=0.13025,  # SDXL VAE's
        force_upcast=False,
    )


def build_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """Build the tiny pipeline in memory; the same seed gives bit-identical weights."""
    vocab, merges = clip_bpe_vocab()
    tokenizer = clip_tokenizer(vocab, merges, pad_token="<|endoftext|>")
    tokenizer_2 = clip_tokenizer(vocab, merges, pad_token="!")

    with seeded(seed):
        text_encoder = CLIPTextModel(_text_encoder_config())
        text_encoder_2 = CLIPTextModelWithProjection(_text_encoder_config())
        unet = _unet()
        vae = _vae()
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=sdxl_scheduler(),  # type: ignore[arg-type]  # SDXL base's own; diffusers hints an enum
        add_watermarker=False,
    )
    for module in (text_encoder, text_encoder_2, unet, vae):
        module.eval()  # from_pretrained returns eval-mode modules; match it
    return pipe


def build(out_dir: Path, seed: int = 0) -> Path:
    """Write the tiny pipeline with `save_pretrained` (safetensors) and return `out_dir`.

    The tokenizer folders end up as in SDXL base: `vocab.json` + `merges.txt` + `tokenizer_config.json`.
    transformers 5 would otherwise save only a 3.5 MB `tokenizer.json` per tokenizer; the BPE files are
    smaller, load faster (about 40 ms against 160 ms) and take the same loading path as the real repo.
    """
    pipe = build_pipeline(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    bpe_files = write_clip_bpe_tokenizer_files(out_dir / "tokenizer")
    for bpe_file in bpe_files:
        shutil.copyfile(bpe_file, out_dir / "tokenizer_2" / bpe_file.name)
    for folder in ("tokenizer", "tokenizer_2"):
        (out_dir / folder / "tokenizer.json").unlink()
    return out_dir
