"""Settings for every component (pydantic-settings, env prefix ``SPOTDIFF_``).

Defaults are the reference behaviour (`IMGDIFF_REFERENCE.md`). A ``profile`` fills in what a profile changes
(model locations, sizes, thresholds random weights can pass) *under* whatever the caller or the environment set,
so ``SPOTDIFF_PIPELINE__PAIR_COSINE_MAX=0.97`` still wins over the tiny profile's value.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

AttnImplementation = Literal["sdpa", "eager", "flash_attention_2"]
Profile = Literal["tiny", "reference"]  # each a data file in spotdiff/profiles/
PROFILES: tuple[str, ...] = get_args(Profile)
DEFAULT_PROFILE: Profile = "tiny"
Rewriter = Literal["lexicon", "model"]
REWRITERS: tuple[str, ...] = get_args(Rewriter)
PIPELINE_SERVICES = ("generation", "similarity", "regions", "captioning")  # what each pair's steps call
REWRITING = "rewriting"  # stage (a): caption pairs from single captions, before any pair exists
SERVICE_NAMES = (*PIPELINE_SERVICES, REWRITING)


def default_tiny_dir() -> Path:
    """Where `spotdiff models tiny` writes the tiny checkpoints unless told otherwise."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "spotdiff" / "tiny"


class ServiceSettings(BaseModel):
    """What every model service shares: where its model is, how it runs, and its limits."""

    model: str = Field(description="local directory or hub id")
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    gpu_memory_fraction: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="the share of its CUDA device this service may allocate (services sharing one card); none: "
        "no limit",
    )
    max_batch_size: int = Field(default=8, ge=1)
    max_wait_ms: float = Field(default=5.0, ge=0, description="how long a batch waits to fill")
    max_queue: int = Field(default=64, ge=1, description="queued requests before 429")
    max_request_bytes: int = Field(default=64 * 2**20, ge=1024)
    max_image_pixels: int = Field(default=4096 * 4096, ge=1)
    token: SecretStr | None = Field(default=None, description="internal bearer token; none means open")
    request_timeout_s: float = Field(
        default=600.0,
        gt=0,
        le=86400,
        description="the longest one call to this service may take, its queue wait and retries included: the "
        "client's time budget, and what the deadline of each pipeline step that calls it is made of",
    )


class GenerationSettings(ServiceSettings):
    model: str = "stabilityai/stable-diffusion-xl-base-1.0"
    variant: str | None = Field(
        default=None,
        description="weight variant to load (fp16: the *.fp16.safetensors files); none: the plain files, or fp16 "
        "when a local directory holds only those",
    )
    max_batch_size: int = Field(default=2, ge=1, description="pairs per UNet batch")
    height: int = Field(default=1024, ge=64, le=4096)
    width: int = Field(default=1024, ge=64, le=4096)
    num_inference_steps: int = Field(default=50, ge=1, le=500)
    guidance_scale: float = Field(default=7.5, ge=0, le=50)
    edit: Literal["refine", "replace", "none"] = "refine"
    cross_replace: float = Field(default=1.0, ge=0, le=1)
    self_replace: float = Field(default=0.4, ge=0, le=1)
    max_steps: int = Field(default=200, ge=1)
    max_pixels: int = Field(default=2048 * 2048, ge=64 * 64)
    vae_slicing: bool = Field(default=False, description="decode a batch's images one at a time (less memory)")
    vae_tiling: bool = Field(default=False, description="decode each image in tiles (large images in less memory)")


class SimilaritySettings(ServiceSettings):
    model: str = Field(
        default="ViT-B-32-quickgelu",
        description="open_clip model name; OpenAI's weights need a -quickgelu name (the service refuses a name "
        "whose activation its pretrained weights were not trained with)",
    )
    pretrained: str | None = Field(default="openai", description="open_clip pretrained tag; none for local-dir")
    max_batch_size: int = 64
    max_items_per_request: int = Field(default=1024, ge=1)
    text_scorer: Literal["clip", "blip"] = Field(
        default="blip", description="scores image-text pairs: BLIP's ITC cosine (the reference) or CLIP's cosine"
    )
    blip_model: str = Field(default="Salesforce/blip-itm-large-coco", description="BlipForImageTextRetrieval")
    request_timeout_s: float = Field(default=120.0, gt=0, le=86400, description="scores take milliseconds")


class RegionsSettings(ServiceSettings):
    model: str = Field(default="sam_vit_h_4b8939.pth", description="segment-anything checkpoint file")
    model_type: str = "vit_h"
    max_batch_size: int = 4
    request_timeout_s: float = Field(default=300.0, gt=0, le=86400, description="a 32x32-point pass takes seconds")
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0


class CaptioningSettings(ServiceSettings):
    model: str = "llava-hf/llava-v1.6-vicuna-7b-hf"
    max_batch_size: int = 8
    max_new_tokens_limit: int = Field(default=512, ge=1)
    attn_implementation: AttnImplementation | None = Field(
        default=None,
        description="transformers' attention (flash_attention_2 needs its package); none: sdpa where "
        "the model supports it",
    )


class RewritingSettings(ServiceSettings):
    """A causal language model that rewrites a caption with one object replaced (stage (a)); ORIG by default
    (Vicuna, temperature 0.8, 128 new tokens, the post-filters); ``recipe="dj"`` with Data-Juicer's model,
    wording and decoding (``temperature=0.9``, ``top_p=0.95``, ``max_new_tokens=512``) is Data-Juicer's."""

    model: str = "lmsys/vicuna-7b-v1.5"
    recipe: Literal["orig", "dj"] = Field(
        default="orig",
        description="orig: the authors' task wording and post-filters; dj: Data-Juicer's wording, its system "
        "prompt in the chat template, and no post-filters but trimming",
    )
    task: str | None = Field(default=None, description="the instruction after the caption; none: the recipe's")
    template: Literal["auto", "vicuna", "chat"] = Field(
        default="auto",
        description="vicuna: FastChat's vicuna_v1.1 conversation; chat: the tokenizer's chat template; auto: the "
        "chat template when the tokenizer has one, else Vicuna's",
    )
    temperature: float = Field(default=0.8, gt=0, le=10)
    top_p: float | None = Field(
        default=None, gt=0, le=1, description="none: the model's generation_config (the reference passes none)"
    )
    top_k: int | None = Field(
        default=None, ge=0, description="none: the model's generation_config, else transformers' 50; 0: no top-k"
    )
    max_new_tokens: int = Field(default=128, ge=1, le=4096)
    attn_implementation: AttnImplementation | None = Field(
        default=None, description="transformers' attention (flash_attention_2 needs its package); none: sdpa"
    )
    max_batch_size: int = 16
    request_timeout_s: float = Field(default=120.0, gt=0, le=86400, description="one rewrite takes seconds")


# Cosine scores lie in [-1, 1]; a threshold just outside that range lets every score through.
Threshold = Annotated[float, Field(ge=-1.01, le=1.01)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
MAX_NEW_TOKENS = 4096  # no service is ever configured above this; each has its own, lower, limit


class PipelineSettings(BaseModel):
    """The Img-Diff decisions; reference (ORIG) values by default. Every value is bounded and finite: a job may
    carry them (`JobSettings`), and a NaN threshold would decide nothing."""

    model_config = ConfigDict(allow_inf_nan=False)

    semantics: Literal["orig", "dj"] = Field(
        default="orig", description="which reference variant's rules (spotdiff/imgdiff/areas.py names each)"
    )
    proposals: Literal["amg", "prior", "prior_sam"] = Field(
        default="amg",
        description="amg: SAM's automatic masks on both images (the reference); prior: the weight-free change "
        "map's boxes; prior_sam: the change map's boxes as SAM box prompts on both images",
    )
    prior_block: int | None = Field(
        default=None, ge=1, le=4096, description="change-map block in pixels (none: 1/64 side)"
    )
    prior_max_boxes: int = Field(default=10, ge=1, le=100)
    pair_cosine_min: Threshold = Field(default=0.9, description="keep the pair if min < cos < max")
    pair_cosine_max: Threshold = 0.98
    text_match_min: Threshold = Field(default=0.35, description="a crop matches a changed object above this")
    crop_cosine_max: Threshold = Field(default=0.85, description="a crop pair differs below this")
    nms_iou: Fraction = 0.5
    max_boxes: int = Field(default=10, ge=1, le=100)
    min_region_area_fraction: Fraction = Field(default=1 / 400, description="ORIG: skip label boxes under W*H*this")
    max_region_area_fraction: Fraction = Field(default=1 / 10, description="DJ: skip label boxes over W*H*this")
    max_labelled_regions: int = Field(default=5, ge=1, le=100)
    label_cosine_max: Threshold = Field(default=0.85, description="labels of a box must differ below this")
    label_match_min: Threshold = Field(default=0.35, description="each label must match its crop above this")
    label_max_new_tokens: int = Field(default=64, ge=1, le=MAX_NEW_TOKENS)
    caption_max_new_tokens: int = Field(default=128, ge=1, le=MAX_NEW_TOKENS)
    caption_wording: Literal["reference", "corrected", "dj"] = Field(
        default="reference", description="the difference prompt: verbatim, without the doubled 'the', or DJ's"
    )
    concurrency: int = Field(default=8, ge=1, le=1024, description="pairs in flight at once in a run")
    cosine_pairs_per_request: int = Field(
        default=256,
        ge=1,
        le=65536,
        description="score pairs per similarity request (the service caps operands per request)",
    )


#: What a job may not override: how a deployment runs, not what the pipeline decides.
DEPLOYMENT_ONLY = frozenset({"concurrency", "cosine_pairs_per_request"})


class GatewaySettings(BaseModel):
    """The public API: who may call it and how much one job may ask."""

    api_keys: list[str] = Field(
        default_factory=list, description="sha256 hex digests of the accepted API keys (never the keys themselves)"
    )
    max_pairs_per_job: int = Field(default=1000, ge=1, le=100_000)
    max_request_bytes: int = Field(default=8 * 2**20, ge=1024)
    max_concurrent_service_calls: int = Field(
        default=8, ge=1, description="single-service calls in flight per service from one gateway; more get 429"
    )
    events_keepalive_s: float = Field(
        default=15.0, gt=0, le=300, description="a comment on a job's event stream this often, so that proxies keep it"
    )
    max_jobs_in_flight_per_key: int = Field(
        default=32, ge=1, description="queued or running jobs one API key may have; one more gets 429"
    )
    max_pairs_per_minute_per_key: int = Field(
        default=20_000,
        ge=1,
        description="pairs one API key may submit per minute, sustained (a token bucket that holds at least one "
        "job of max_pairs_per_job); a job with a target costs its pair budget",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="when set, /metrics answers only 'Authorization: Bearer <token>'"
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="when set, /metrics is served on this port of its own (for a scraper inside the cluster) and "
        "not on the API's port",
    )


class WorkerSettings(BaseModel):
    """How the Celery workers reach the services and retry them."""

    service_urls: dict[str, str] = Field(
        default_factory=lambda: {
            "generation": "http://127.0.0.1:8101",
            "similarity": "http://127.0.0.1:8102",
            "regions": "http://127.0.0.1:8103",
            "captioning": "http://127.0.0.1:8104",
            "rewriting": "http://127.0.0.1:8105",
        }
    )
    service_token: SecretStr | None = None
    max_retries: int = Field(default=6, ge=0, description="task retries of a pair whose services stay unavailable")
    retry_backoff_s: float = Field(default=2.0, gt=0, description="first retry delay; doubles, at most step_grace_s")
    step_margin_s: float = Field(
        default=30.0,
        gt=0,
        description="a step's deadline is the time budgets of the services it calls in turn plus this (store "
        "reads and writes, decoding, rendering)",
    )
    step_grace_s: float = Field(
        default=10.0,
        gt=0,
        description="past its deadline a step gets this long before Celery's soft time limit, twice this before "
        "the hard one (which kills the process)",
    )
    reconcile_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="how often the reconciler (run by the workers, one at a time) looks for stalled pairs "
        "(and, every tenth pass or after a Redis loss, for jobs whose progress Redis lost)",
    )
    lease_s: float = Field(
        default=15.0,
        gt=0,
        description="a running step renews its pair's lease every third of this; a lease not renewed for this "
        "long belongs to a worker that died, and the reconciler sends the step again",
    )
    max_lease_expiries: int = Field(
        default=3,
        ge=1,
        description="times a pair's step may outlive its lease (its worker died, or it hung) before the pair "
        "ends with a deadline_exceeded record",
    )
    visibility_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="when Redis hands an unacknowledged task to another worker; default: just above the longest "
        "step's hard time limit and retry delay",
    )
    result_expires_s: int = Field(default=3600, ge=60)


def load_profile(name: str, tiny_dir: Path) -> dict[str, Any]:
    """What profile ``name`` changes, from its data file (``spotdiff/profiles/<name>.json``): nested settings,
    with ``{tiny_dir}`` in any text standing for where the tiny checkpoints are."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; one of {', '.join(PROFILES)}")
    raw = json.loads(resources.files("spotdiff.profiles").joinpath(f"{name}.json").read_text(encoding="utf-8"))

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items() if not key.startswith("_")}
        return value.replace("{tiny_dir}", str(tiny_dir)) if isinstance(value, str) else value

    profile: dict[str, Any] = fill(raw)
    return profile


def _merge_under(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Fill ``values`` with ``defaults`` wherever it has nothing of its own (recursively)."""
    merged = dict(values)
    for key, default in defaults.items():
        current = merged.get(key)
        if key not in merged:
            merged[key] = default
        elif isinstance(default, dict) and isinstance(current, dict):
            merged[key] = _merge_under(current, default)
        elif isinstance(default, dict) and isinstance(current, BaseModel):
            merged[key] = _merge_under(current.model_dump(exclude_unset=True), default)
    return merged


class Settings(BaseSettings):
    """Everything a spotdiff process can be told; nested fields via ``SPOTDIFF_<SECTION>__<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="SPOTDIFF_", env_nested_delimiter="__", env_ignore_empty=True, extra="ignore"
    )

    profile: Profile = DEFAULT_PROFILE
    tiny_dir: Path = Field(default_factory=default_tiny_dir)
    storage_url: str = Field(default="out", description="artifact store root: a directory or s3://bucket/prefix")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Celery broker and job store")
    rewriter: Rewriter = Field(
        default="model",
        description="what makes caption pairs from single captions: the weight-free lexicon rewriter, or the "
        "rewriting service's language model (at worker.service_urls.rewriting; an embedded run starts it in "
        "process)",
    )
    log_json: bool = Field(
        default=False, description="log one JSON object per line (with job, pair, step ids) instead of plain text"
    )
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    similarity: SimilaritySettings = Field(default_factory=SimilaritySettings)
    regions: RegionsSettings = Field(default_factory=RegionsSettings)
    captioning: CaptioningSettings = Field(default_factory=CaptioningSettings)
    rewriting: RewritingSettings = Field(default_factory=RewritingSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("profile", DEFAULT_PROFILE) not in PROFILES:
            return data  # an unknown profile: the field's own validation says so
        tiny_dir = Path(data.get("tiny_dir") or default_tiny_dir())
        return _merge_under(data, load_profile(data.get("profile", DEFAULT_PROFILE), tiny_dir))

    def service(self, name: str) -> ServiceSettings:
        """The settings block of one model service by name."""
        if name not in SERVICE_NAMES:
            raise ValueError(f"unknown service {name!r}; one of {', '.join(SERVICE_NAMES)}")
        block: ServiceSettings = getattr(self, name)
        return block

    def services_in_use(self) -> tuple[str, ...]:
        """The services this deployment runs: the pipeline's four, and the rewriting service when it rewrites."""
        return (*PIPELINE_SERVICES, REWRITING) if self.rewriter == "model" else PIPELINE_SERVICES

    def service_budgets(self) -> dict[str, float]:
        """Each service's time budget per call, for its clients."""
        return {name: self.service(name).request_timeout_s for name in SERVICE_NAMES}
