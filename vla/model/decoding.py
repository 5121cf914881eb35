"""Action decoding: KV-cached autoregressive, no-cache reference, parallel (one pass), HF generate() baseline.

    ids = decode(policy, inputs)                                   # the policy's configured mode
    ids = decode_autoregressive(policy, inputs, use_cache=True)    # [B, n] greedy, action ids only
    ids = decode_autoregressive(policy, inputs, use_cache=False)   # identical ids, recomputes everything
    ids = decode_parallel(policy, inputs)                          # [B, n] from one forward pass
    ids = generate_baseline(policy, inputs)                        # transformers generate(), batch 1

`inputs` is what `VLAPolicy.prepare_observations` returns. Greedy decoding over logits restricted to
the action block (FAST: the block includes its end token; rows that ended keep emitting it).
The KV cache is a transformers `DynamicCache` (5.x has no tuple caches).
"""

from __future__ import annotations

from typing import Any

import torch

from vla.model.transforms import attention_mask_4d, position_ids


def decode(policy: Any, inputs: dict[str, torch.Tensor], mode: str | None = None) -> torch.Tensor:
    mode = mode or policy.cfg.action.decoding
    if mode == "parallel":
        return decode_parallel(policy, inputs)
    if mode == "autoregressive":
        return decode_autoregressive(policy, inputs, use_cache=True)
    raise ValueError(f"unknown decoding mode {mode!r}; expected autoregressive or parallel")


@torch.no_grad()
def decode_parallel(policy: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    if policy.eos_id is not None:
        raise ValueError("parallel decoding needs a fixed-length action tokenizer (bins), not FAST")
    logits = policy.forward(inputs["pixel_values"], inputs["prompt_ids"], inputs["prompt_mask"], inputs.get("state"),
                            mode="parallel")
    return policy.restrict(logits).argmax(-1)  # [B, n]


def _next_token(policy: Any, logits: torch.Tensor, done: torch.Tensor | None) -> torch.Tensor:
    tok = policy.restrict(logits).argmax(-1)  # [B]
    if done is not None:
        tok = torch.where(done, torch.full_like(tok, policy.eos_id), tok)
    return tok


def _compact(prefix: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Drop columns that are padding in every row; report whether any padding is left.

    At batch 1 (the control loop) nothing is left, so attention needs no explicit mask and SDPA takes
    its fast causal / unmasked kernels instead of a boolean-mask fallback. Position ids are unchanged.
    """
    keep = valid.any(0)
    if not bool(keep.all()):
        prefix, valid = prefix[:, keep], valid[:, keep]
    return prefix, valid, not bool(valid.all())


@torch.no_grad()
def decode_autoregressive(policy: Any, inputs: dict[str, torch.Tensor], use_cache: bool = True) -> torch.Tensor:
    """Greedy decoding of the n action slots -> ids [B, n] (FAST: may stop early, then [B, n' <= n])."""
    from transformers import DynamicCache

    prefix, valid = policy.embed_prefix(inputs["pixel_values"], inputs["prompt_ids"], inputs["prompt_mask"],
                                        inputs.get("state"))  # [B, L, D], [B, L]
    prefix, valid, padded = _compact(prefix, valid)
    b = prefix.shape[0]
    n = policy.num_action_tokens
    eos = policy.eos_id
    done = torch.zeros(b, dtype=torch.bool, device=prefix.device) if eos is not None else None
    lm = policy.lm
    tokens: list[torch.Tensor] = []
    if use_cache:
        cache = DynamicCache(config=lm.config)
        pos = position_ids(valid)  # [B, L]
        mask = policy.lm_mask(attention_mask_4d(valid), prefix.dtype) if padded else None  # None: plain causal
        out = lm(inputs_embeds=prefix, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True,
                 logits_to_keep=1)
        next_pos = pos[:, -1:] + 1  # [B, 1]
        for i in range(n):
            tok = _next_token(policy, out.logits[:, -1], done)
            tokens.append(tok)
            if done is not None:
                done = done | (tok == eos)
                if bool(done.all()):
                    break
            if i == n - 1:
                break
            step_mask = None
            if padded:
                valid = torch.cat([valid, torch.ones(b, 1, dtype=torch.bool, device=valid.device)], 1)
                step_mask = policy.lm_mask(valid[:, None, None, :], prefix.dtype)  # [B, 1, 1, L+i+1]
            out = lm(inputs_embeds=policy.embed_tokens(tok)[:, None], attention_mask=step_mask,
                     position_ids=next_pos, past_key_values=out.past_key_values, use_cache=True)
            next_pos = next_pos + 1
    else:
        seq = prefix
        for i in range(n):
            mask = attention_mask_4d(valid)
            out = lm(inputs_embeds=seq, attention_mask=policy.lm_mask(mask, seq.dtype), position_ids=position_ids(valid),
                     use_cache=False, logits_to_keep=1)
            tok = _next_token(policy, out.logits[:, -1], done)
            tokens.append(tok)
            if done is not None:
                done = done | (tok == eos)
                if bool(done.all()):
                    break
            if i == n - 1:
                break
            seq = torch.cat([seq, policy.embed_tokens(tok)[:, None]], 1)
            valid = torch.cat([valid, torch.ones(b, 1, dtype=torch.bool, device=valid.device)], 1)
    return torch.stack(tokens, 1)  # [B, n]


@torch.no_grad()
def generate_baseline(policy: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """transformers `generate()` on the same weights (how OpenVLA's predict_action runs); batch 1 only.

    Prompt padding is dropped first so generate's contiguous positions equal ours.
    """
    prefix, valid = policy.embed_prefix(inputs["pixel_values"], inputs["prompt_ids"], inputs["prompt_mask"],
                                        inputs.get("state"))
    if prefix.shape[0] != 1:
        raise ValueError(f"generate_baseline runs batch 1 (got {prefix.shape[0]})")
    x = prefix[:, valid[0]]  # [1, L', D]
    n = policy.num_action_tokens
    mask = policy.action_logit_mask
    eos = policy.eos_id

    def restrict(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:  # HF LogitsProcessor protocol
        return scores.masked_fill(~mask, float("-inf"))

    out = policy.lm.generate(
        inputs_embeds=x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long, device=x.device),
        max_new_tokens=n, min_new_tokens=None if eos is not None else n, do_sample=False, num_beams=1,
        logits_processor=[restrict], eos_token_id=eos, pad_token_id=eos if eos is not None else 0,
    )
    return out[:, -n:] if eos is None else out  # inputs_embeds-only generate returns just the new tokens
