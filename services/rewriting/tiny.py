"""A tiny, seeded, random-weight Llama causal LM with a word-level tokenizer, saved in transformers' layout.

The rewriting service loads it with `AutoTokenizer` + `AutoModelForCausalLM.from_pretrained`, as it would
lmsys/vicuna-7b-v1.5: the same architecture (`LlamaForCausalLM`), a tokenizer with no chat template and no pad
token (so the service takes Vicuna's conversation and pads with <unk>, as for Vicuna), BOS prepended. The
vocabulary is the prompt's words, the tiny captioner's words and the rewriting lexicon's nouns, so random
generations decode to readable words and now and then to a caption-like sentence.
"""

from __future__ import annotations

from pathlib import Path

from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from services.kit.checkpoints import save_pretrained, seeded, word_level_backend, word_level_lm_tokenizer
from spotdiff.imgdiff.rewrite import DJ_TASK, ORIG_TASK, VICUNA_SYSTEM, lexicon, user_message

UNK, BOS, EOS = "<unk>", "<s>", "</s>"  # ids 0..2, Llama's order


def vocabulary() -> list[str]:
    """Special tokens, then every word of the prompts, the captioner's words and the lexicon, once each."""
    from services.captioning.tiny import vocabulary as captioner_words

    prompt = " ".join([VICUNA_SYSTEM, user_message("", ORIG_TASK), DJ_TASK, "USER: ASSISTANT:"])
    words = word_level_backend([UNK], UNK).pre_tokenizer.pre_tokenize_str(prompt.lower())
    tokens = [UNK, BOS, EOS]
    seen = set(tokens)
    nouns = [noun for kind in lexicon().values() for noun in kind for noun in noun.split()]
    for word in [*(piece for piece, _ in words), *captioner_words(), *nouns]:
        if word not in seen and not word.startswith("<"):
            seen.add(word)
            tokens.append(word)
    return tokens


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Vicuna's shape: <s> prepended, no pad token and no chat template (the service supplies both)."""
    return word_level_lm_tokenizer(vocabulary(), unk=UNK, bos=BOS, eos=EOS, model_max_length=4096)


def build_model_and_tokenizer(seed: int = 0) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Both in memory, the model in eval mode; the same seed gives bit-identical weights."""
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with seeded(seed):
        model = LlamaForCausalLM(config).eval()
    # as vicuna-7b-v1.5's generation_config.json: sampling settings the reference's generate call inherits
    model.generation_config.update(temperature=0.9, top_p=0.6, do_sample=True)
    return model, tokenizer


def build(out_dir: Path, seed: int = 0) -> Path:
    return save_pretrained(*build_model_and_tokenizer(seed), out_dir)
