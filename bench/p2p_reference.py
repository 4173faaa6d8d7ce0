"""A reference-style Prompt-to-Prompt processor: probabilities materialised in every layer and step, edited
literally as the reference's ``AttentionRefine`` / ``AttentionReplace`` / self-replacement do, and attention
maps of the small layers stored as its ``AttentionStore`` does.

It is what spotdiff's fused processor is checked against (same images) and measured against (`bench/p2p.py`).
It reads the same controller as spotdiff's processor, so both run the very same edit.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.attention_processor import Attention

from services.generation.p2p import ControllerSlot, P2PController

STORE_MAX_QUERIES = 32**2  # the reference keeps maps of layers with at most 32x32 queries


class ReferenceStyleProcessor:
    def __init__(self, slot: ControllerSlot, *, store_maps: bool = True) -> None:
        self.slot = slot
        self.store_maps = store_maps
        self.maps: list[torch.Tensor] = []

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
        residual = hidden_states
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        query = attn.to_q(hidden_states)
        is_cross = encoder_hidden_states is not None
        context = encoder_hidden_states if encoder_hidden_states is not None else hidden_states
        key, value = attn.to_k(context), attn.to_v(context)
        query, key, value = (attn.head_to_batch_dim(x) for x in (query, key, value))
        probs = attn.get_attention_scores(query, key, attention_mask)
        controller = self.slot.controller
        if controller is not None:
            probs = self.edit(probs, is_cross, attn.heads, controller)
        if self.store_maps and probs.shape[1] <= STORE_MAX_QUERIES:
            self.maps.append(probs.detach().clone())
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        result: torch.Tensor = hidden_states / attn.rescale_output_factor
        return result

    @staticmethod
    def edit(probs: torch.Tensor, is_cross: bool, heads: int, controller: P2PController) -> torch.Tensor:
        batch = probs.shape[0] // heads
        view = probs.view(batch, heads, *probs.shape[1:]).clone()
        offset = batch - 2 * controller.pairs
        for pair in range(controller.pairs):
            base, target = view[offset + 2 * pair], view[offset + 2 * pair + 1]
            if is_cross:
                weights = controller.cross_weights[pair, controller.row].to(probs.device, probs.dtype)
                mapped = base[:, :, controller.mapper[pair].to(probs.device)]
                view[offset + 2 * pair + 1] = mapped * weights + target * (1 - weights)
            elif controller.step < int(controller.self_until[pair]) and probs.shape[1] <= controller.self_max_queries:
                view[offset + 2 * pair + 1] = base
        return view.view_as(probs)
