"""Action decoding: KV-cached autoregressive, no-cache reference, parallel (one pass), HF generate() baseline.

    inputs = to_tensors(io.inputs([obs]), device)                  # PolicyIO feeds as torch tensors
    ids = decode(policy, inputs)                                   # the policy's configured mode
    ids = decode(policy, inputs, prefix_ids=p)                     # p int64 [B, k]: the first k ids forced
    ids = decode_autoregressive(policy, inputs, use_cache=True)    # [B, n] greedy, action ids only
    ids = decode_autoregressive(policy, inputs, use_cache=False)   # identical ids, recomputes everything
    ids = decode_parallel(policy, inputs)                          # [B, n] from one forward pass
    ids = generate_baseline(policy, inputs)                        # transformers generate(), batch 1
    layer_loop_unsupported(policy.lm)                              # None, or why the lean step is unavailable

Greedy decoding over logits restricted to the action block (FAST: the block includes its end token; rows
that ended keep emitting it), or over the whole vocabulary with `action.restrict_logits` False (OpenVLA's
own decoding; `policy.score_range`), through `vla.greedy.greedy`, the loop the graph runtimes share.
The KV cache is a transformers `DynamicCache` (5.x has no tuple caches).

Prefix forcing (`prefix_ids` [B, k], absolute ids inside the action block, 0 <= k <= n): autoregressive
decoding (every path: layer loop, LM call, no-cache reference) emits the forced ids in slots 0..k-1 and feeds
them back, so slots k.. are the greedy continuation *conditioned on them*. Parallel decoding feeds no emitted
token back; its forcing is *forced slots*: the first k ids are the forced ones. A parallel policy trained with
`action.prefix_conditioning` (chunks whose first 1..H-1 steps were given to the slots as token embeddings)
is given them the same way, so slots k.. condition on them in the one pass; without that training the slots
hold placeholders and slots k.. are exactly the unforced prediction.

Why the cached loop has two step implementations: at control-loop sizes (batch 1, a few layers) one
decoded token costs per-call framework overhead, not maths. Calling the causal LM per token re-runs
its wrappers (output capturing, config defaults), builds a causal mask, recomputes rotary embeddings
and multiplies the hidden state by the whole vocabulary. The *layer loop* (`layer_loop=True`, the
default where supported: the families of `vla.model.lm` with full attention and static RoPE) runs the same
transformers decoder layers and final norm, with rotary embeddings computed once for all n slots, a
mask only when there is padding, and the LM head's action-block rows only. `layer_loop=False` steps
through the full `lm(...)` call instead (any causal LM). Both give ids identical to the no-cache
reference and to `generate()` (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vla.greedy import Step, check_prefix, greedy
from vla.model.lm import LM_FAMILIES
from vla.model.policy import VLAPolicy
from vla.model.sequence import position_ids


def to_tensors(feeds: Mapping[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """PolicyIO's numpy feeds -> torch tensors on `device` (what `decode` and `VLAPolicy.forward` take)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in feeds.items()}


def decode(policy: VLAPolicy, inputs: dict[str, torch.Tensor], mode: str | None = None,
           prefix_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Action ids [B, n] in `mode` (None: the policy's), the first k forced to `prefix_ids` [B, k] if given."""
    mode = mode or policy.cfg.action.decoding
    if mode == "parallel":
        return decode_parallel(policy, inputs, prefix_ids)
    if mode == "autoregressive":
        return decode_autoregressive(policy, inputs, use_cache=True, prefix_ids=prefix_ids)
    raise ValueError(f"unknown decoding mode {mode!r}; expected autoregressive or parallel")


def _forced(policy: VLAPolicy, inputs: dict[str, torch.Tensor], prefix_ids: object, lo: int,
            hi: int) -> torch.Tensor | None:
    """prefix_ids validated (`vla.greedy.check_prefix`) as int64 [B, k] on the inputs' device; None if absent or k = 0."""
    if prefix_ids is None:
        return None
    ids = torch.as_tensor(prefix_ids, device=inputs["prompt_ids"].device)
    k = check_prefix(ids, inputs["prompt_ids"].shape[0], policy.num_action_tokens, lo, hi)
    return ids.long() if k else None


@torch.inference_mode()
def decode_parallel(policy: VLAPolicy, inputs: dict[str, torch.Tensor],
                    prefix_ids: torch.Tensor | None = None) -> torch.Tensor:
    """All n slots from one forward pass -> ids [B, n].

    prefix_ids [B, k]: forced slots. The first k ids are the forced ones. A policy trained with
    `action.prefix_conditioning` is given them in its first k slots (`VLAPolicy.slot_inputs`), so the rest
    conditions on them; otherwise the slots hold placeholders and the rest is exactly the unforced prediction."""
    if policy.eos_id is not None:
        raise ValueError("parallel decoding needs a fixed-length action tokenizer (bins), not FAST")
    a = policy.cfg.action
    if a.block_end is not None and a.decoding != "parallel":
        raise ValueError("this converted checkpoint decodes autoregressively; it was never trained to decode in "
                         "parallel (its action slots are placeholders): use mode autoregressive")
    forced = None if prefix_ids is None else _forced(policy, inputs, prefix_ids, *_action_block(policy))
    given = slot_ids = None
    if forced is not None and a.prefix_conditioning > 0:
        b, k = forced.shape
        slot_ids = torch.nn.functional.pad(forced, (0, policy.num_action_tokens - k), value=policy.action_block[0])
        given = policy.first_slots(forced.new_full((b,), k))  # [B, n]: the first k slots
    logits = policy.forward(inputs["pixel_values"], inputs["prompt_ids"], inputs["prompt_mask"], inputs.get("state"),
                            slot_ids, mode="parallel", given=given)
    ids = policy.restrict(logits).argmax(-1)  # [B, n]
    return ids if forced is None else torch.cat([forced, ids[:, forced.shape[1]:]], 1)


def _compact(prefix: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Drop columns that are padding in every row; report whether any padding is left.

    At batch 1 (the control loop) nothing is left, so attention needs no explicit mask and SDPA takes
    its fast causal / unmasked kernels instead of a boolean-mask fallback. Position ids are unchanged.
    """
    keep = valid.any(0)
    if not bool(keep.all()):
        prefix, valid = prefix[:, keep], valid[:, keep]
    return prefix, valid, not bool(valid.all())


def _action_block(policy: VLAPolicy) -> tuple[int, int]:
    """[lo, hi): the action ids, one contiguous block of the vocabulary (checked against the mask, not assumed)."""
    mask = policy.action_logit_mask  # [V]
    lo, hi = policy.action_block
    if not bool(mask[lo:hi].all()) or int(mask.sum()) != hi - lo:
        raise ValueError("action_logit_mask must mark exactly the policy's action block")
    return lo, hi


def _causal_lm(lm: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (training evaluates LoRA-wrapped policies)."""
    return lm.get_base_model() if hasattr(lm, "get_base_model") else lm


def layer_loop_unsupported(lm: nn.Module) -> str | None:
    """None if the lean layer-loop step applies to this causal LM, else the reason it does not."""
    cfg = lm.config
    fam = LM_FAMILIES.get(cfg.model_type)
    if fam is None or not fam.layer_loop:
        return f"model_type {cfg.model_type!r} is not one of {sorted(k for k, f in LM_FAMILIES.items() if f.layer_loop)}"
    if cfg._attn_implementation not in ("sdpa", "eager"):
        return f"attention {cfg._attn_implementation!r}: only sdpa / eager take the masks the layer loop passes"
    types = getattr(cfg, "layer_types", None) or ()
    if any(t != "full_attention" for t in types):
        return f"layer types {sorted(set(types))}: sliding-window layers need transformers' own masks"
    rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope in ("dynamic", "longrope"):
        return f"rope_type {rope!r} depends on the sequence length, so it cannot be computed once for all slots"
    dec = _causal_lm(lm).get_decoder()
    missing = [a for a in ("layers", "norm", "rotary_emb") if not hasattr(dec, a)]
    if missing:
        return f"{type(dec).__name__} has no {missing}"
    return None


def _head(lm: nn.Module, lo: int, hi: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """hidden [B, D] -> float32 scores [B, hi-lo] from the LM head's action rows only."""
    out = _causal_lm(lm).get_output_embeddings()
    if type(out) is nn.Linear:  # not e.g. a LoRA-wrapped head, whose adapter slicing the weight would skip
        w = out.weight[lo:hi]  # [A, D] view, no copy
        b = out.bias[lo:hi] if out.bias is not None else None
        return lambda h: F.linear(h, w, b).float()
    return lambda h: out(h)[..., lo:hi].float()


def _cached_steps(policy: VLAPolicy, prefix: torch.Tensor, valid: torch.Tensor, padded: bool, lo: int, hi: int,
                  layer_loop: bool) -> tuple[torch.Tensor, Step]:
    """Prefill the KV cache -> (slot 0's scores [B, A], the per-token step)."""
    from transformers import DynamicCache

    lm = policy.lm
    dec = _causal_lm(lm).get_decoder()
    embed = lm.get_input_embeddings()
    cache = DynamicCache(config=lm.config)
    b, L = valid.shape
    n = policy.num_action_tokens
    pos = position_ids(valid)  # [B, L]
    step_pos = pos[:, -1:] + torch.arange(1, n, device=pos.device)  # [B, n-1]: where fed-back slot i sits
    prefill_mask = step_masks = None  # None: plain causal / unmasked (SDPA's fast kernels)
    if padded:  # [B, 1, L, L]
        prefill_mask = policy.lm_mask(policy.sequence_mask(valid, L), prefix.dtype)
    if padded:
        full = torch.cat([valid, valid.new_ones(b, n - 1)], 1)  # [B, L+n-1]
        step_masks = policy.lm_mask(full[:, None, None, :], prefix.dtype)  # [B, 1, 1, L+n-1], sliced per step

    if not layer_loop:  # the whole causal LM per token
        out = lm(inputs_embeds=prefix, attention_mask=prefill_mask, position_ids=pos, past_key_values=cache,
                 use_cache=True, logits_to_keep=1)

        def lm_step(tok: torch.Tensor, i: int) -> torch.Tensor:
            m = None if step_masks is None else step_masks[..., : L + i + 1]
            o = lm(inputs_embeds=embed(tok)[:, None], attention_mask=m, position_ids=step_pos[:, i:i + 1],
                   past_key_values=cache, use_cache=True)
            return o.logits[:, -1, lo:hi].float()

        return out.logits[:, -1, lo:hi].float(), lm_step

    head = _head(lm, lo, hi)
    hidden = dec(inputs_embeds=prefix, attention_mask=prefill_mask, position_ids=pos, past_key_values=cache,
                 use_cache=True).last_hidden_state  # [B, L, D]
    layers = dec.layers[: dec.config.num_hidden_layers]
    cos, sin = dec.rotary_emb(prefix, step_pos)  # [B, n-1, head_dim] each, once for every slot

    def layer_step(tok: torch.Tensor, i: int) -> torch.Tensor:
        x = embed(tok)[:, None]  # [B, 1, D]
        m = None if step_masks is None else step_masks[..., : L + i + 1]  # keys: prefix + slots 0..i
        pe = (cos[:, i:i + 1], sin[:, i:i + 1])
        for layer in layers:
            x = layer(x, attention_mask=m, position_ids=step_pos[:, i:i + 1], past_key_values=cache, use_cache=True,
                      position_embeddings=pe)
        return head(dec.norm(x)[:, -1])

    return head(hidden[:, -1]), layer_step


@torch.inference_mode()
def decode_autoregressive(policy: VLAPolicy, inputs: dict[str, torch.Tensor], use_cache: bool = True,
                          layer_loop: bool | None = None, prefix_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy decoding of the n action slots -> ids [B, n] (FAST: may stop early, then [B, n' <= n]).

    layer_loop (KV cache only): None = the lean layer loop where `layer_loop_unsupported` allows it, else
    the full LM call per token; True = the layer loop or ValueError saying why not; False = the LM call.
    prefix_ids [B, k] (ids in the action block, k <= n): slots 0..k-1 emit them and are fed back, the rest
    continue greedily from them (a forced FAST end token ends its row). Every path forces alike.
    """
    if layer_loop and not use_cache:
        raise ValueError("layer_loop=True needs use_cache=True (the no-cache reference always calls the whole LM)")
    forced = _forced(policy, inputs, prefix_ids, *_action_block(policy))  # before any compute: bad input fails fast
    lo, hi = policy.score_range  # the ids the greedy argmax ranks: the action block, or the whole vocabulary
    prefix, valid, _, ctx = policy.embed_observation(inputs["pixel_values"], inputs["prompt_ids"], inputs["prompt_mask"],
                                                     inputs.get("state"))  # [B, L, D], [B, L]
    prefix, valid, padded = _compact(prefix, valid)
    with policy.fusion_context(ctx):  # the fusion hooks read the observation's context at every LM call
        return _decode_prefix(policy, prefix, valid, padded, use_cache, layer_loop, forced, lo, hi)


def _decode_prefix(policy: VLAPolicy, prefix: torch.Tensor, valid: torch.Tensor, padded: bool, use_cache: bool,
                   layer_loop: bool | None, forced: torch.Tensor | None, lo: int, hi: int) -> torch.Tensor:
    n, eos = policy.num_action_tokens, policy.eos_id
    if use_cache:
        lean = False
        if layer_loop is not False:
            why = layer_loop_unsupported(policy.lm)
            if layer_loop and why is not None:
                raise ValueError(f"layer_loop=True is unavailable: {why}")
            lean = why is None
        scores, step = _cached_steps(policy, prefix, valid, padded, lo, hi, layer_loop=lean)
        return greedy(scores, step, n, lo, eos, xp=torch, forced=forced)

    lm, embed = policy.lm, policy.lm.get_input_embeddings()
    seq = prefix
    prefix_len = prefix.shape[1]

    def recompute(tok: torch.Tensor, i: int) -> torch.Tensor:  # the reference: whole sequence, whole vocabulary
        nonlocal seq, valid
        seq = torch.cat([seq, embed(tok)[:, None]], 1)
        valid = torch.cat([valid, valid.new_ones(valid.shape[0], 1)], 1)
        return logits_last()

    def logits_last() -> torch.Tensor:
        out = lm(inputs_embeds=seq, attention_mask=policy.lm_mask(policy.sequence_mask(valid, prefix_len), seq.dtype),
                 position_ids=position_ids(valid), use_cache=False, logits_to_keep=1)
        return policy.restrict(out.logits[:, -1])  # [B, V], non-action ids -inf

    return greedy(logits_last(), recompute, n, 0, eos, xp=torch, forced=forced)


@torch.no_grad()
def generate_baseline(policy: VLAPolicy, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """transformers `generate()` on the same weights (how OpenVLA's predict_action runs); batch 1 only.

    Prompt padding is dropped first so generate's contiguous positions equal ours.
    """
    prefix, valid, _, ctx = policy.embed_observation(inputs["pixel_values"], inputs["prompt_ids"],
                                                     inputs["prompt_mask"], inputs.get("state"))
    if prefix.shape[0] != 1:
        raise ValueError(f"generate_baseline runs batch 1 (got {prefix.shape[0]})")
    x = prefix[:, valid[0]]  # [1, L', D]
    n = policy.num_action_tokens
    mask = policy.action_logit_mask
    eos = policy.eos_id

    def restrict(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:  # HF LogitsProcessor protocol
        return scores.masked_fill(~mask, float("-inf"))

    with policy.fusion_context(ctx):
        out = policy.lm.generate(
            inputs_embeds=x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long, device=x.device),
            max_new_tokens=n, min_new_tokens=None if eos is not None else n, do_sample=False, num_beams=1,
            logits_processor=[restrict] if policy.cfg.action.restrict_logits else [], eos_token_id=eos,
            pad_token_id=eos if eos is not None else 0,
        )
    return out[:, -n:] if eos is None else out  # inputs_embeds-only generate returns just the new tokens
