"""A tiny, seeded, random-weight LLaVA-NeXT captioner saved in transformers' real on-disk layout.

The captioning service loads it with `AutoProcessor` + `AutoModelForImageTextToText.from_pretrained`,
as it would llava-hf/llava-v1.6-vicuna-7b-hf: same model and processor classes, anyres tiling, vicuna
chat template, left padding. The tokenizer is a word-level vocabulary built in code, so random
generations decode to readable (if meaningless) English words instead of byte-level BPE fragments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessor,
    LlavaNextProcessor,
    PreTrainedTokenizerFast,
)

from services.kit.checkpoints import save_pretrained, seeded, word_level_backend, word_level_lm_tokenizer

UNK, BOS, EOS, PAD, IMAGE = "<unk>", "<s>", "</s>", "<pad>", "<image>"
SPECIAL_TOKENS = (UNK, BOS, EOS, PAD, IMAGE)  # ids 0..4, Llama's order for the first three

IMAGE_SIZE = 64
PATCH_SIZE = 16
# anyres tiles, (height, width): base tile plus up to 2x2, as llava-v1.6's pinpoints scaled down
IMAGE_GRID_PINPOINTS = [[64, 64], [64, 128], [128, 64], [128, 128]]

# llava-hf/llava-v1.6-vicuna-7b-hf's chat template: "USER: <image>\n{text} ASSISTANT:"
VICUNA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}"
    "{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}"
    "{% endfor %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# Prompt vocabulary (chat roles, region/difference captioning prompts) plus everyday words that make
# random captions read like captions: objects, animals, colours, positions, sizes, counts.
_WORDS = """
user assistant system
a an the this that these those it its is are was were be been being has have had do does did
and or but not no yes of in on at to from by with without for about into onto over under above below
between behind beside near next inside outside around through across along up down left right top
bottom middle center centre front back side corner edge upper lower
please provide give describe description describing clear short brief detailed caption region regions
box boxes bounding image images picture photo photograph area part object objects item items detail
details content contents difference differences different same similar change changed changes compare
what which where who how why when there here than then also only just very more most less some any
all each both other another one two three four five six seven eight nine ten first second third
answer question analyse analyze separated vertical horizontal bar line shown shows showing visible
can see seen looks look like appears contains containing holding sitting standing lying walking
running flying swimming eating playing parked hanging placed located
man woman boy girl child children person people baby player crowd family
cat cats dog dogs horse horses cow cows sheep bird birds duck fish bear bears elephant giraffe zebra
lion tiger monkey rabbit mouse frog snake butterfly
car cars bus truck train bicycle bike motorcycle boat airplane plane road street sidewalk bridge sign
traffic light house building buildings window door wall roof fence tower city
tree trees grass flower flowers plant plants leaf leaves field forest mountain hill river lake sea
ocean beach sand sky cloud clouds sun moon snow water rock rocks
table chair sofa couch bed lamp clock book books cup mug bottle glass plate bowl fork knife spoon
pizza cake apple banana orange sandwich bread food vase laptop computer phone television tv keyboard
bag umbrella hat shirt dress shoe shoes ball kite frisbee skateboard surfboard toy teddy
red orange yellow green blue purple pink brown black white gray grey silver gold dark light bright
colorful colourful striped wooden metal plastic
big small large little tiny huge tall short long wide round square old new young open closed empty
full happy sunny cloudy
""".split()

_DIGITS = [str(digit) for digit in range(10)]
_PUNCTUATION = [".", ",", ":", ";", "[", "]", "(", ")", "?", "!", "'", '"', "-", "/"]


def vocabulary() -> list[str]:
    """The tokenizer's vocabulary in id order: special tokens, digits, punctuation, then words."""
    tokens = [*SPECIAL_TOKENS, *_DIGITS, *_PUNCTUATION]
    seen = set(tokens)
    for word in _WORDS:
        if word not in seen:
            seen.add(word)
            tokens.append(word)
    return tokens


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer that never fails: any text tokenizes, unknown words become <unk>.

    Lower-cases, splits on whitespace, isolates each punctuation mark and each digit (so numbers like
    "0.12" in region prompts stay in-vocabulary), prepends <s>, and decodes by joining with spaces.
    """
    return word_level_lm_tokenizer(
        vocabulary(),
        unk=UNK,
        bos=BOS,
        eos=EOS,
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE},  # LlavaNextProcessor expands it to the image features
        padding_side="left",  # decoder-only batched generation
        model_max_length=2048,
    )


def build_processor(
    image_size: int = IMAGE_SIZE,
    pinpoints: list[list[int]] = IMAGE_GRID_PINPOINTS,
    patch_size: int = PATCH_SIZE,
    **image_options: Any,
) -> LlavaNextProcessor:
    """LLaVA-NeXT processor: anyres tiling (at 64 px by default), CLS-token bookkeeping as in llava-v1.6, the
    word-level tokenizer; the full-size build passes llava-v1.6's own sizes and normalisation."""
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_grid_pinpoints=pinpoints,
        **image_options,
    )
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLIP vision tower's CLS token, dropped by "default"
        chat_template=VICUNA_CHAT_TEMPLATE,
        image_token=IMAGE,
    )


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:
        raise ValueError(f"{token!r} is not a single token of the tokenizer")
    return token_id


def _model_config(tokenizer: PreTrainedTokenizerFast) -> LlavaNextConfig:
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=_token_id(tokenizer, IMAGE),
        image_grid_pinpoints=IMAGE_GRID_PINPOINTS,
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )


def build_model_and_processor(seed: int = 0) -> tuple[LlavaNextForConditionalGeneration, LlavaNextProcessor]:
    """Build both in memory, the model in eval mode; the same seed gives bit-identical weights."""
    processor = build_processor()
    tokenizer = processor.tokenizer
    with seeded(seed):
        model = LlavaNextForConditionalGeneration(_model_config(tokenizer)).eval()
    generation = model.generation_config
    generation.bos_token_id = tokenizer.bos_token_id
    generation.eos_token_id = tokenizer.eos_token_id
    generation.pad_token_id = tokenizer.pad_token_id
    generation.min_length = 0  # random weights may emit </s> at once; never force tokens
    generation.min_new_tokens = None
    return model, processor


def build(out_dir: Path, seed: int = 0) -> Path:
    """Save model (safetensors) and processor with `save_pretrained` into `out_dir` and return it."""
    return save_pretrained(*build_model_and_processor(seed), out_dir)


# Qwen2-VL: the same word-level vocabulary with Qwen's chat and vision tokens, and its chat template.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build_qwen2_vl_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level like the LLaVA one (readable random words), no BOS, Qwen's special tokens."""
    tokens = [token for token in vocabulary() if token not in SPECIAL_TOKENS[1:]] + list(QWEN_SPECIAL_TOKENS)
    backend = word_level_backend(tokens, UNK)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        unk_token=UNK,
        pad_token="<|endoftext|>",
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=2048,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    return tokenizer


def build_qwen2_vl_model_and_processor(seed: int = 0) -> tuple[Any, Any]:
    """A tiny Qwen2-VL (``Qwen2VLForConditionalGeneration``) and its processor (image and video processors)."""
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = build_qwen2_vl_tokenizer()
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112),
        video_processor=Qwen2VLVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    ids = {token: _token_id(tokenizer, token) for token in QWEN_SPECIAL_TOKENS}
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    with seeded(seed):
        model = Qwen2VLForConditionalGeneration(config).eval()
    generation = model.generation_config
    generation.eos_token_id = ids["<|im_end|>"]
    generation.pad_token_id = ids["<|endoftext|>"]
    return model, processor


def build_qwen2_vl(out_dir: Path, seed: int = 0) -> Path:
    """Save the tiny Qwen2-VL and its processor with `save_pretrained` into `out_dir` and return it."""
    return save_pretrained(*build_qwen2_vl_model_and_processor(seed), out_dir)
