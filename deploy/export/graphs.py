"""Export-friendly views of a `VLAPolicy`: four `nn.Module`s with static shapes (batch aside) that trace to ONNX.

    g = build_graphs(policy)            # {"encoder": ..., "parallel": ..., "prefill": ..., "decode_step": ...}
    prefix, valid = g["encoder"](pixel_values, prompt_ids, prompt_mask, state)

Graphs (shapes for batch B; L = prefix length, n = action slots, A = action-id block, Cap = L + n):
- encoder:     vision tower + projector for all cameras, prompt embedding, state token
               -> prefix_embeds [B, L, D], prefix_mask bool [B, L]  (this is `VLAPolicy.embed_prefix` itself)
- parallel:    prefix [+ slot_ids, slot_given: the forced prefix, policies trained with
               `action.prefix_conditioning`] -> action_logits [B, n, A] (only the action slots' rows and the scored-id columns:
               the action block, or all V ids with `action.restrict_logits` False),
               action_ids int64 [B, n] (argmax inside the graph, already offset into the vocabulary)
- prefill:     prefix -> logits [B, A] predicting slot 0, next_ids [B], next_position [B],
               cache_k / cache_v [layers, B, Hkv, Cap, hd] (slots >= L are zero)
- decode_step: token_ids [B], position_ids [B], write_index [1], kv_mask bool [B, Cap], cache_k/v
               -> logits [B, A], next_ids [B], cache_k/v with slot `write_index` written

Fusion (`VLAConfig.fusion`): with cross-attention or late fusion the encoder also outputs the mode's
context (`policy.fusion.context_names`: vis_k / vis_v [blocks, B, H, Nv, hd], the cross-attention blocks'
visual keys and values, computed once per observation; late_context [B, D]), and parallel / prefill /
decode_step take it as extra inputs after their own. `DecoderCore` runs the cross-attention blocks before
their decoder layers; the late-fusion head runs from its hook on the final norm (both read the context
made active by `VLAPolicy.fusion_context`, exactly as in torch).

The LM layers run through `DecoderCore`, a thin re-composition of the transformers Llama-family modules
(their own projections, RMSNorms, MLPs and rotary embedding) with attention written as MatMul/Softmax/
Where and the KV cache as fixed-capacity tensors updated with `Where(slot == write_index)`: no `If`,
no ScatterND, no zero-length tensors, no contrib ops, nothing data-dependent for TensorRT to trip on.
Masks and position ids come from `vla.model.sequence` (the functions training uses).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vla.model.lm import export_unsupported
from vla.model.policy import VLAPolicy
from vla.model.sequence import position_ids

# Only LM families whose decoder layer DecoderCore re-composes exactly are exported (`vla.model.lm`); others
# (Gemma's scaled embeddings, Qwen3's q/k norms) would silently compute something else, so they are refused.
NEG = torch.finfo(torch.float16).min  # masked score: finite in fp16 engines too; exp() of it is 0 in fp32


class DecoderCore(nn.Module):
    """The policy LM's layers with explicit masks, positions and (optionally) a fixed-capacity KV cache."""

    def __init__(self, lm: nn.Module, fusion: nn.Module | None = None) -> None:
        super().__init__()
        self.fusion = fusion if hasattr(fusion, "before_layer") else None  # cross-attention blocks
        cfg = lm.config
        why = export_unsupported(cfg.model_type)
        if why is not None:
            raise ValueError(f"ONNX export: {why}")
        self.lm = lm
        self.n_layers = int(cfg.num_hidden_layers)
        self.n_heads = int(cfg.num_attention_heads)
        self.n_kv = int(cfg.num_key_value_heads or cfg.num_attention_heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
        for layer in lm.model.layers:
            if hasattr(layer.self_attn, "q_norm"):
                raise ValueError("ONNX export: attention with q/k norms is not supported")

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """q [B, H, T, hd], k/v [B, Hkv, Tk, hd], mask bool [B, 1, T, Tk] -> [B, T, H*hd]."""
        rep = self.n_heads // self.n_kv
        if rep > 1:  # grouped-query attention: share each kv head across `rep` query heads
            b, h, tk, hd = k.shape
            k = k[:, :, None].expand(b, h, rep, tk, hd).reshape(b, h * rep, tk, hd)
            v = v[:, :, None].expand(b, h, rep, tk, hd).reshape(b, h * rep, tk, hd)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (self.head_dim ** -0.5)  # [B, H, T, Tk]
        scores = scores.masked_fill(~mask, NEG)
        probs = torch.softmax(scores.float(), dim=-1).to(v.dtype)
        out = torch.matmul(probs, v)  # [B, H, T, hd]
        return out.transpose(1, 2).flatten(2)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor,
                cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """x [B, T, D], pos [B, T], mask bool [B, 1, T, Tk] -> (final-normed hidden [B, T, D], keys, values).

        Without `cache`, Tk = T and the returned keys/values are this call's [B, Hkv, T, hd].
        With `cache` = (cache_k, cache_v [layers, B, Hkv, Cap, hd], slot bool [Cap]), T = 1: the new key/value
        is written at `slot` and attention runs over all Cap slots (the mask hides unwritten ones).
        """
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        base = self.lm.model
        b, t, _ = x.shape
        cos, sin = base.rotary_emb(x, pos)  # [B, T, hd]
        keys, values = [], []
        for i, layer in enumerate(base.layers):
            if self.fusion is not None:  # a gated cross-attention block before this layer (if it has one)
                x = self.fusion.before_layer(i, x, self.fusion.active)
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q = a.q_proj(h).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, T, hd]
            k = a.k_proj(h).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)  # [B, Hkv, T, hd]
            v = a.v_proj(h).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            if cache is not None:
                slot = cache[2].view(1, 1, -1, 1)  # [1, 1, Cap, 1]
                k = torch.where(slot, k, cache[0][i])  # [B, Hkv, Cap, hd]
                v = torch.where(slot, v, cache[1][i])
            keys.append(k)
            values.append(v)
            x = x + a.o_proj(self._attend(q, k, v, mask))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return base.norm(x), keys, values


class _PolicyGraph(nn.Module):
    def __init__(self, policy: VLAPolicy) -> None:
        super().__init__()
        self.policy = policy
        self.n = int(policy.num_action_tokens)
        # the ids the argmax ranks (`VLAPolicy.score_range`): the action block, or the whole vocabulary
        self.action_start, self.score_end = (int(i) for i in policy.score_range)

    def _action_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [B, T, D] -> logits over the scored ids only [B, T, A] (float32): the action block
        (computing only its rows is the restriction), or every id when decoding is unrestricted."""
        lm_head = self.policy.lm.lm_head
        lo, hi = self.action_start, self.score_end
        w = lm_head.weight[lo:hi]  # [A, D]
        bias = lm_head.bias[lo:hi] if lm_head.bias is not None else None
        return nn.functional.linear(hidden, w, bias).float()

    def _ids(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(-1) + self.action_start  # vocabulary ids, as `VLAPolicy.restrict(...).argmax`

    def _context(self, ctx: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """The fusion context inputs (after the graph's own), by name."""
        return dict(zip(context_names(self.policy), ctx, strict=True))


def context_names(policy: VLAPolicy) -> tuple[str, ...]:
    """The fusion-context tensors the encoder emits and the decoder graphs take (none for early fusion)."""
    return tuple(policy.fusion.context_names) if policy.fusion is not None else ()


class EncoderGraph(_PolicyGraph):
    def forward(self, pixel_values: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                state: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        prefix, valid, _, ctx = self.policy.embed_observation(pixel_values, prompt_ids, prompt_mask, state)
        return (prefix, valid, *(ctx[k] for k in context_names(self.policy)))  # [B, L, D], [B, L], context


class ParallelGraph(_PolicyGraph):
    def __init__(self, policy: Any) -> None:
        super().__init__(policy)
        self.core = DecoderCore(policy.lm, policy.fusion)
        self.bidirectional = policy.cfg.action.parallel_attention == "bidirectional"

    def forward(self, prefix_embeds: torch.Tensor, prefix_mask: torch.Tensor,
                *rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """rest: (slot_ids [B, n] int64, slot_given [B, n] bool) first when the policy was trained with
        `action.prefix_conditioning` (the forced prefix, `VLAPolicy.slot_inputs`), then the fusion context."""
        b, L, _ = prefix_embeds.shape
        if self.policy.cfg.action.prefix_conditioning > 0:
            (slot_ids, slot_given), ctx = rest[:2], rest[2:]
            tail = self.policy.slot_inputs(b, prefix_embeds.dtype, slot_ids, slot_given)  # [B, n, D]
        else:
            ctx = rest
            tail = self.policy.slot_inputs(b, prefix_embeds.dtype)  # [B, n, D]
        x = torch.cat([prefix_embeds, tail], 1)  # [B, L + n, D]
        valid = torch.cat([prefix_mask, torch.ones_like(prefix_mask[:, :1]).expand(b, self.n)], 1)  # [B, L + n]
        mask = self.policy.sequence_mask(valid, L, bidirectional_tail=self.bidirectional)
        with self.policy.fusion_context(self._context(ctx)):
            hidden, _, _ = self.core(x, position_ids(valid), mask)
        logits = self._action_logits(hidden[:, L:])  # [B, n, A]
        return logits, self._ids(logits)


class PrefillGraph(_PolicyGraph):
    def __init__(self, policy: Any, capacity: int) -> None:
        super().__init__(policy)
        self.core = DecoderCore(policy.lm, policy.fusion)
        self.capacity = int(capacity)

    def forward(self, prefix_embeds: torch.Tensor, prefix_mask: torch.Tensor, *ctx: torch.Tensor):
        L = prefix_embeds.shape[1]
        pos = position_ids(prefix_mask)  # [B, L]
        with self.policy.fusion_context(self._context(ctx)):
            hidden, keys, values = self.core(prefix_embeds, pos, self.policy.sequence_mask(prefix_mask, L))  # [B,1,L,L]
        logits = self._action_logits(hidden[:, -1])  # [B, A]
        pad = (0, 0, 0, self.capacity - L)  # [B, Hkv, L, hd] -> [B, Hkv, Cap, hd]; Cap > L always
        cache_k = torch.stack([nn.functional.pad(k, pad) for k in keys])  # [layers, B, Hkv, Cap, hd]
        cache_v = torch.stack([nn.functional.pad(v, pad) for v in values])
        return logits, self._ids(logits), pos[:, -1] + 1, cache_k, cache_v


class DecodeStepGraph(_PolicyGraph):
    def __init__(self, policy: Any, capacity: int) -> None:
        super().__init__(policy)
        self.core = DecoderCore(policy.lm, policy.fusion)
        self.capacity = int(capacity)

    def forward(self, token_ids: torch.Tensor, position: torch.Tensor, write_index: torch.Tensor,
                kv_mask: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor, *ctx: torch.Tensor):
        x = self.policy.embed_tokens(token_ids)[:, None]  # [B, 1, D]
        slot = torch.arange(self.capacity, device=x.device) == write_index  # [Cap] one-hot
        mask = kv_mask[:, None, None, :]  # [B, 1, 1, Cap]
        with self.policy.fusion_context(self._context(ctx)):
            hidden, keys, values = self.core(x, position[:, None], mask, cache=(cache_k, cache_v, slot))
        logits = self._action_logits(hidden[:, 0])  # [B, A]
        return logits, self._ids(logits), torch.stack(keys), torch.stack(values)


def build_graphs(policy: VLAPolicy) -> dict[str, nn.Module]:
    """The graphs this policy exports: parallel only with a fixed-length (bins) action tokenizer, and not for
    converted autoregressive checkpoints."""
    cap = int(policy.prefix_len) + int(policy.num_action_tokens)
    graphs: dict[str, nn.Module] = {"encoder": EncoderGraph(policy)}
    # a converted checkpoint (action.block_end set, e.g. OpenVLA) was never trained to decode in parallel: no
    # such graph (for a 7B decoder it would be another copy of every weight)
    converted = policy.cfg.action.block_end is not None and policy.cfg.action.decoding != "parallel"
    if policy.eos_id is None and not converted:
        graphs["parallel"] = ParallelGraph(policy)
    graphs["prefill"] = PrefillGraph(policy, cap)
    graphs["decode_step"] = DecodeStepGraph(policy, cap)
    # eval mode on the wrappers too: torch.onnx.export restores each module's own training flag afterwards, and
    # a wrapper left in training mode would flip the policy's BatchNorm layers to training (their running stats
    # then move on the next call: the exported graph and the torch policy drift apart)
    return {k: g.eval() for k, g in graphs.items()}
