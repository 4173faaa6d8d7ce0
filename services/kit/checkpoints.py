"""What the tiny builders share (torch-free): writing a checkpoint in the transformers layout with the objects' own
``save_pretrained``, and the word-level tokenizer their language models speak."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Random weights drawn from ``seed`` (the same seed, bit-identical checkpoints) without moving the caller's
    random state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def save_pretrained(model: Any, processor: Any, out_dir: Path) -> Path:
    """Model weights as safetensors and the processor beside them, as the real checkpoints ship; ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return out_dir


def word_level_backend(tokens: Sequence[str], unk: str) -> Tokenizer:
    """A word-level tokenizer that never fails, ids in ``tokens`` order: lower-cases, splits on whitespace,
    isolates each punctuation mark and digit (so "0.12" stays in vocabulary), unknown words become ``unk``, and
    decodes by joining with single spaces, so random generations read as (meaningless) English words."""
    backend = Tokenizer(models.WordLevel({token: index for index, token in enumerate(tokens)}, unk_token=unk))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # join with single spaces, nothing else
    return backend


def word_level_lm_tokenizer(
    tokens: Sequence[str], *, unk: str, bos: str, eos: str, **options: Any
) -> PreTrainedTokenizerFast:
    """The tokenizer of a tiny decoder-only language model: ``word_level_backend`` with ``bos`` prepended to every
    text, as Llama's tokenizer does; ``options`` (padding side, pad and extra special tokens, maximum length) go
    to transformers' fast tokenizer as they would from a real checkpoint's tokenizer_config.json."""
    from transformers import PreTrainedTokenizerFast

    backend = word_level_backend(tokens, unk)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, list(tokens).index(bos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        unk_token=unk,
        clean_up_tokenization_spaces=False,
        **options,
    )
