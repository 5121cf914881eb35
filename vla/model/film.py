"""FiLM of the vision features on the instruction (RT-1), before the projector: `VLAConfig.film`.

    film = InstructionFiLM(text_dim=D, feat_dim=Dv, vocab_size=V)
    film.set_idf([build_prompt(cfg, text, t) for t in instructions])   # pooling prior from the training prompts
    feats = film(feats, txt, prompt_ids, prompt_mask, cameras)    # [B*C, P, Dv] -> same shape

The prompt is pooled by attention (one learned score per token, starting from inverse document frequency
over the training prompts, so the template every prompt shares weighs ~0), then a linear map gives a
scale and shift per vision channel. Both linear maps start at zero: the module starts as the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# the pooling scores are scaled up (FiLMConfig.pool_scale): token embeddings are small (~0.4 norm), so unscaled
# scores move ~10x too slowly under Adam for the pooling to single out the instruction's one informative word


class InstructionFiLM(nn.Module):
    def __init__(self, text_dim: int, feat_dim: int, vocab_size: int, pool_scale: float = 10.0) -> None:
        super().__init__()
        self.pool_scale = float(pool_scale)
        self.proj = nn.Linear(text_dim, 2 * feat_dim)  # pooled prompt -> (gamma, beta)
        self.pool = nn.Linear(text_dim, 1)  # one score per prompt token
        for layer in (self.proj, self.pool):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.register_buffer("idf", torch.ones(vocab_size))  # [V]; saved with the weights

    def set_idf(self, prompts: Sequence[Sequence[int]]) -> None:
        """idf(t) = log((N + 1) / (df(t) + 1)) over N distinct prompts (token id lists): a token in every
        prompt weighs ~0. A token never seen in training weighs 0 too: its embedding is untrained, so a new
        word in a paraphrase ("hover over the red block") must not take the pooling over."""
        df = torch.zeros_like(self.idf)
        for ids in prompts:
            df[sorted(set(ids))] += 1
        self.idf.copy_(torch.where(df > 0, torch.log((len(prompts) + 1) / (df + 1)), torch.zeros_like(df)))

    def forward(self, feats: torch.Tensor, txt: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                cameras: int) -> torch.Tensor:
        """feats [B*C, P, Dv] (row b*C + c), txt [B, T, D] prompt embeddings -> feats * (1 + gamma) + beta."""
        score = self.pool_scale * self.pool(txt.to(self.pool.weight.dtype)).squeeze(-1).float()  # [B, T]
        score = score + torch.log(self.idf[prompt_ids].float() + 1e-3)  # weights start idf-proportional
        score = score.masked_fill(~prompt_mask.bool(), -1e9)  # finite: exports cleanly, exp() is exactly 0
        w = torch.softmax(score, dim=1).unsqueeze(-1).to(txt.dtype)  # [B, T, 1]
        pooled = (w * txt).sum(1)  # [B, D]
        gamma, beta = self.proj(pooled.to(self.proj.weight.dtype)).chunk(2, -1)  # [B, Dv] each
        gamma = gamma.repeat_interleave(cameras, 0).unsqueeze(1).to(feats.dtype)  # [B*C, 1, Dv]
        beta = beta.repeat_interleave(cameras, 0).unsqueeze(1).to(feats.dtype)
        return feats * (1 + gamma) + beta
