"""Prompt-to-Prompt on diffusers' SDXL through the attention-processor API (no pipeline fork).

The batch holds k pairs ``[source_1, target_1, ..., source_k, target_k]``; with classifier-free guidance the
UNet sees ``[uncond x 2k, cond x 2k]`` and only the conditional half is edited, as in the reference.

The reference materialises the attention probabilities of every layer and step, edits them and multiplies
by the values. Every edit it makes is linear in the probabilities, so spotdiff rewrites it as fused
``scaled_dot_product_attention`` calls and never materialises them:

- self-attention replacement (``P_tgt := P_src``): ``sdpa(q_src, k_src, v_tgt)``;
- cross-attention refine with weights ``w = alpha_time_word * alpha_aligned`` and mapper ``m``:
  ``P_new = w * P_src[:, m] + (1 - w) * P_tgt``, so
  ``P_new @ v_tgt = sdpa(q_src, k_src, V') + sdpa(q_tgt, k_tgt, (1 - w) * v_tgt)`` where
  ``V'[i] = sum over j with m[j] = i of w[j] * v_tgt[j]``; the second term vanishes where ``w`` is 1.

Source rows are computed by the same full-batch call as the default processor, and layers or steps with
nothing to edit go to diffusers' own ``AttnProcessor2_0``, so an edit never touches the source image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0


@dataclass(frozen=True)
class PairEdit:
    """One pair's edit: per step and token, how much of the source's cross-attention the target takes
    (``cross_weights``, shape ``(steps + 1, 77)``), which source token each target token reads (``mapper``)
    and until which step self-attention is replaced."""

    cross_weights: torch.Tensor
    mapper: torch.Tensor
    self_until: int


class P2PController:
    """The state of one pipeline call: its pairs' edits and the current denoising step."""

    def __init__(
        self,
        edits: Sequence[PairEdit],
        *,
        self_max_queries: int,
        on_step: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.pairs = len(edits)
        self.cross_weights = torch.stack([edit.cross_weights for edit in edits])  # (k, steps + 1, 77)
        self.mapper = torch.stack([edit.mapper for edit in edits])  # (k, 77)
        self.self_until = torch.tensor([edit.self_until for edit in edits])
        self.self_max_queries = self_max_queries
        self.step = 0
        self._on_step = on_step
        self._should_stop = should_stop
        self._cache: dict[tuple[str, torch.device, torch.dtype], Any] = {}

    def step_end(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        """``callback_on_step_end``: advance the step, report progress, stop when every caller has left."""
        self.step = step + 1
        if self._on_step is not None:
            self._on_step(self.step)
        if self._should_stop is not None and self._should_stop():
            pipe._interrupt = True
        return {}

    @property
    def row(self) -> int:
        """This step's row of the per-step tables (the last row once the steps run out)."""
        return min(self.step, self.cross_weights.shape[1] - 1)

    def cross_now(self) -> torch.Tensor | None:
        """This step's cross-attention weights per pair, or None when no pair edits cross-attention now."""
        weights = self.cross_weights[:, self.row]
        return weights if bool(weights.any()) else None

    def self_now(self, queries: int) -> torch.Tensor | None:
        """Which pairs replace self-attention in a layer of ``queries`` tokens at this step (None: none)."""
        if queries > self.self_max_queries:
            return None
        active = self.step < self.self_until
        return active if bool(active.any()) else None

    def on(self, name: str, tensor: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """A controller tensor moved to the UNet's device and dtype once per call, not once per layer."""
        key = (name, device, dtype)
        if key not in self._cache:
            self._cache[key] = tensor.to(device=device, dtype=dtype)
        cached: torch.Tensor = self._cache[key]
        return cached


class ControllerSlot:
    """Where the processors find the current call's controller; empty means plain SDXL."""

    def __init__(self) -> None:
        self.controller: P2PController | None = None


def _query_tokens(hidden_states: torch.Tensor) -> int:
    if hidden_states.ndim == 4:
        return int(hidden_states.shape[2] * hidden_states.shape[3])
    return int(hidden_states.shape[1])


class P2PAttnProcessor:
    """Diffusers' ``AttnProcessor2_0`` with the Prompt-to-Prompt edits folded into its attention call."""

    def __init__(self, slot: ControllerSlot) -> None:
        self.slot = slot
        self.stock = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        controller = self.slot.controller
        is_cross = encoder_hidden_states is not None
        cross = self_pairs = None
        if controller is not None:
            if is_cross:
                cross = controller.cross_now()
            else:
                self_pairs = controller.self_now(_query_tokens(hidden_states))
        if controller is None or (cross is None and self_pairs is None):
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        return self._edited(
            attn, hidden_states, encoder_hidden_states, attention_mask, temb, controller, cross, self_pairs
        )

    def _edited(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        temb: torch.Tensor | None,
        controller: P2PController,
        cross: torch.Tensor | None,
        self_pairs: torch.Tensor | None,
    ) -> torch.Tensor:
        # The prologue and epilogue are AttnProcessor2_0's, step for step.
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        hidden_states = edited_attention(query, key, value, attention_mask, controller, cross, self_pairs)

        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        result: torch.Tensor = hidden_states / attn.rescale_output_factor
        return result


def edited_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    controller: P2PController,
    cross: torch.Tensor | None,
    self_pairs: torch.Tensor | None,
) -> torch.Tensor:
    """Attention of a ``(batch, heads, tokens, dim)`` batch with the targets' rows edited (see module doc)."""
    pairs = controller.pairs
    offset = query.shape[0] - 2 * pairs  # the conditional half starts here (0 without guidance)
    sources = torch.arange(pairs, device=query.device) * 2 + offset
    targets = sources + 1
    edited_query, edited_key, edited_value = query.clone(), key.clone(), value.clone()
    remainder: torch.Tensor | None = None
    if self_pairs is not None:
        chosen = self_pairs.to(query.device)
        edited_query[targets[chosen]] = query[sources[chosen]]
        edited_key[targets[chosen]] = key[sources[chosen]]
    elif cross is not None:
        weights = controller.on("cross", controller.cross_weights, query.device, value.dtype)[:, controller.row]
        mapper = controller.on("mapper", controller.mapper, query.device, torch.int64)
        target_values = value[targets]  # (k, heads, tokens, dim)
        weighted = target_values * weights[:, None, :, None]
        gathered = torch.zeros_like(target_values)
        index = mapper[:, None, :, None].expand_as(target_values)
        gathered.scatter_add_(2, index, weighted)
        edited_query[targets] = query[sources]
        edited_key[targets] = key[sources]
        edited_value[targets] = gathered
        if not bool((cross == 1).all()):  # checked on the CPU copy: no device sync
            keep = target_values * (1 - weights)[:, None, :, None]
            mask = None if attention_mask is None else attention_mask[targets]
            remainder = F.scaled_dot_product_attention(query[targets], key[targets], keep, attn_mask=mask)
    output = F.scaled_dot_product_attention(
        edited_query, edited_key, edited_value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
    )
    if remainder is not None:
        output[targets] = output[targets] + remainder
    return output


def self_replace_max_queries(width: int) -> int:
    """The reference edits self-attention only in layers with at most ``ceil(W / 32) ** 2`` query tokens."""
    return math.ceil(width / 32) ** 2
