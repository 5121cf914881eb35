"""The unified-sequence VLA policy: vision tower -> projector -> one causal LM -> action tokens.

    policy = VLAPolicy.from_config(VLAConfig.from_yaml("configs/model/tiny.yaml"), instructions=tasks)
    policy.set_normalizers(action=Normalizer(...), state=Normalizer(...))   # training fits these
    chunk = policy.predict_action(obs)             # sim observation dict -> float32 [H, 7], robot units
    chunks = policy.predict_action_batch([obs, ...])                         # [B, H, 7]
    policy.save_pretrained("runs/x/checkpoint"); VLAPolicy.from_pretrained("runs/x/checkpoint")

Sequence (static layout, see `vla.model.config`):
    [visual: C * K][prompt: T, left-padded][state: 0/1][action slots: n]
- autoregressive: the slots hold the previous action tokens (teacher forcing); the logits at the position
  before each slot predict it; decoding runs a KV-cached loop (`vla.model.decoding`).
- parallel (OpenVLA-OFT): the slots hold learned placeholder embeddings, one per slot; the logits at each
  slot predict that slot's token, all n in one forward pass. `action.parallel_attention` chooses whether
  the slots see each other both ways (bidirectional, default, as OFT) or causally.
Logits are restricted to the reserved action-id block both in the loss and when decoding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vla.model.checkpoint import atomic_directory
from vla.model.config import VLAConfig
from vla.model.film import InstructionFiLM
from vla.model.projectors import build_projector
from vla.model.text import TextTokenizer
from vla.model.transforms import (
    attention_mask_4d,
    normalize_images,
    pad_prompts,
    position_ids,
    resize_images,
)
from vla.model.vision import VisionTower

CONFIG_FORMAT = "vla-policy/1"


def _build_lm(cfg: VLAConfig, vocab_size: int) -> nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    lm_cfg = cfg.lm
    if lm_cfg.pretrained is not None:
        model = AutoModelForCausalLM.from_pretrained(
            lm_cfg.pretrained, attn_implementation=lm_cfg.attn_implementation, local_files_only=True,
            dtype=torch.float32,
        )
        if model.config.vocab_size != vocab_size:
            model.resize_token_embeddings(vocab_size)  # append the reserved action block
        return model
    kw = {k: v for k, v in lm_cfg.hf_config.items() if k not in ("model_type", "vocab_size")}
    hf = AutoConfig.for_model(lm_cfg.model_type, vocab_size=vocab_size, **kw)
    return AutoModelForCausalLM.from_config(hf, attn_implementation=lm_cfg.attn_implementation)


def _text_vocab_size(cfg: VLAConfig, text: TextTokenizer) -> int:
    """Ids [0, n) belong to text; the action block follows. A pretrained LM keeps its whole vocabulary."""
    if cfg.text.kind == "embedded":
        return cfg.text.vocab_size
    n = text.vocab_size
    if cfg.lm.pretrained is not None:
        from transformers import AutoConfig

        n = max(n, int(AutoConfig.from_pretrained(cfg.lm.pretrained, local_files_only=True).vocab_size))
    return n


def _build_action_tokenizer(cfg: VLAConfig, vocab_size: int) -> Any:
    from vla.tokenizers import BinActionTokenizer, FastActionTokenizer

    a = cfg.action
    if a.tokenizer == "bins":
        return BinActionTokenizer(vocab_size=vocab_size, n_bins=a.n_bins, low=-1.0, high=1.0)
    return FastActionTokenizer(vocab_size=vocab_size, action_dim=a.dim, horizon=a.horizon, n_tokens=a.fast_tokens,
                               scale=a.fast_scale)


class VLAPolicy(nn.Module):
    """See the module docstring. Build with `from_config` / `from_pretrained`, not the constructor."""

    def __init__(self, cfg: VLAConfig, text_tokenizer: TextTokenizer, text_vocab_size: int,
                 action_tokenizer: Any | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.text_tokenizer = text_tokenizer
        self.text_vocab_size = int(text_vocab_size)
        self.vocab_size = self.text_vocab_size + cfg.action.num_reserved_ids
        self.action_tokenizer = action_tokenizer or _build_action_tokenizer(cfg, self.vocab_size)
        self.normalizers: dict[str, Any] = {}
        self.vision = VisionTower(cfg.vision)
        self.lm = _build_lm(cfg, self.vocab_size)
        d = int(self.lm.config.hidden_size)
        self.hidden_size = d
        self.projector = build_projector(cfg.projector, in_dim=self.vision.hidden_size, out_dim=d,
                                         num_patches=self.vision.num_patches, grid=self.vision.grid)
        self.state_proj = nn.Linear(cfg.state_dim, d) if cfg.use_state else None
        n_vis = len(cfg.cameras) * self.projector.num_tokens
        self.visual_pos = nn.Parameter(torch.randn(n_vis, d) * 0.02) if cfg.visual_pos_embed else None  # [C*K, D]
        self.aux_head = nn.Linear(d, cfg.aux_state_dim) if cfg.aux_state_dim else None  # training-only head
        # aux_source="visual": one pointer score per image token (training-only, as the head, unless pointer_token)
        self.aux_score = nn.Linear(d, 1) if cfg.aux_state_dim and cfg.aux_source == "visual" else None
        # film: the instruction scales and shifts the vision features (vla.model.film; identity at init)
        self.film = InstructionFiLM(d, self.vision.hidden_size, self.vocab_size) if cfg.film else None
        n = cfg.action.num_action_tokens
        self.action_slots = nn.Parameter(torch.randn(n, d) * 0.02)  # [n, D] parallel-decoding placeholders
        block = torch.zeros(self.vocab_size, dtype=torch.bool)
        block[self.vocab_size - cfg.action.num_reserved_ids:] = True
        self.register_buffer("action_logit_mask", block, persistent=False)  # [V]
        self._prompt_cache: dict[str, list[int]] = {}
        self.invalid_chunks = 0  # decoded chunks that did not decode (NaN actions returned)

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg: VLAConfig, instructions: Sequence[str] = ()) -> VLAPolicy:
        """Fresh policy. The embedded text tokenizer is trained on the template + `instructions`."""
        if cfg.text.kind == "embedded":
            text = TextTokenizer.train_embedded(cfg.text.vocab_size, list(instructions))
        else:
            path = cfg.text.path or cfg.lm.pretrained
            if path is None:
                raise ValueError("TextConfig.kind='pretrained' needs text.path or lm.pretrained")
            text = TextTokenizer.from_pretrained_dir(path)
        policy = cls(cfg, text, _text_vocab_size(cfg, text))
        if policy.film is not None and instructions:
            policy.set_prompt_idf(instructions)
        return policy

    def set_prompt_idf(self, instructions: Sequence[str]) -> None:
        """FiLM's prompt-pooling prior: inverse document frequency over the distinct training prompts."""
        self.film.set_idf([self.prompt_ids(text) for text in sorted(set(instructions))])

    @property
    def num_visual_tokens(self) -> int:
        return len(self.cfg.cameras) * self.projector.num_tokens

    @property
    def num_action_tokens(self) -> int:
        return self.cfg.action.num_action_tokens

    @property
    def prefix_len(self) -> int:
        return self.num_visual_tokens + self.cfg.text.prompt_len + int(self.cfg.use_state) + int(self.cfg.pointer_token)

    @property
    def eos_id(self) -> int | None:
        """FAST ends a chunk with an end token; bins have a fixed length."""
        return self.action_tokenizer.eos_id if self.cfg.action.tokenizer == "fast" else None

    def set_normalizers(self, action: Any, state: Any | None = None) -> None:
        if action.dim != self.cfg.action.dim:
            raise ValueError(f"action normalizer has dim {action.dim}, policy acts in {self.cfg.action.dim}")
        self.normalizers = {"action": action}
        if self.cfg.use_state:
            if state is None:
                raise ValueError("VLAConfig.use_state=True needs a state normalizer")
            if state.dim != self.cfg.state_dim:
                raise ValueError(f"state normalizer has dim {state.dim}, VLAConfig.state_dim={self.cfg.state_dim}")
            self.normalizers["observation.state"] = state

    def _normalizer(self, key: str) -> Any:
        if key not in self.normalizers:
            raise ValueError(f"policy has no {key!r} normalizer: fit one (training) or load a checkpoint that has it")
        return self.normalizers[key]

    # ---- inputs ---------------------------------------------------------------------------

    def prompt_ids(self, instruction: str) -> list[int]:
        if instruction not in self._prompt_cache:
            text = self.cfg.prompt_template.format(instruction=instruction.strip())
            self._prompt_cache[instruction] = self.text_tokenizer.encode(text)
        return self._prompt_cache[instruction]

    def encode_prompts(self, instructions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (ids [B, T], mask [B, T]) left-padded to TextConfig.prompt_len."""
        return pad_prompts([self.prompt_ids(s) for s in instructions], self.cfg.text.prompt_len,
                           self.text_tokenizer.pad_id)

    def normalize_state(self, states: np.ndarray) -> torch.Tensor:
        """Raw proprio [B, S] -> normalized float32 [B, S]."""
        x = np.asarray(states, dtype=np.float64)
        return torch.from_numpy(np.asarray(self._normalizer("observation.state").normalize(x), dtype=np.float32))

    def pixels(self, small_images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, S, S, 3] (already resized) or float01 [B, C, 3, S, S] -> normalized [B, C, 3, S, S]."""
        return normalize_images(small_images, self.cfg.vision.image_mean, self.cfg.vision.image_std)

    def prepare_observations(self, observations: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Sim observation dicts -> the tensors `forward` takes (the same path training uses)."""
        if not observations:
            raise ValueError("need at least one observation")
        for k in (*self.cfg.cameras, "instruction") + (("state",) if self.cfg.use_state else ()):
            if k not in observations[0]:
                raise ValueError(f"observation is missing {k!r} (has {sorted(observations[0])})")
        imgs = np.stack([np.stack([o[c] for c in self.cfg.cameras]) for o in observations])  # [B, C, H, W, 3]
        small = resize_images(imgs, self.cfg.vision.image_size)  # [B, C, S, S, 3] uint8
        ids, mask = self.encode_prompts([o["instruction"] for o in observations])
        out = {"pixel_values": self.pixels(small), "prompt_ids": ids, "prompt_mask": mask}
        if self.cfg.use_state:
            out["state"] = self.normalize_state(np.stack([o["state"] for o in observations]))
        dev = self.action_slots.device
        return {k: v.to(dev) for k, v in out.items()}

    def actions_to_ids(self, chunks: np.ndarray, step_valid: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized chunks [B, H, D] -> (target ids [B, n], supervised mask [B, n]).

        bins: H*D ids, steps with `step_valid` False (past the episode end) unsupervised.
        fast: the chunk's ids + EOS, right-padded with EOS (unsupervised) to n slots.
        """
        b, h, d = chunks.shape
        if step_valid is None:
            step_valid = np.ones((b, h), dtype=bool)
        n = self.num_action_tokens
        if self.cfg.action.tokenizer == "bins":
            ids = torch.as_tensor(self.action_tokenizer.encode(chunks.astype(np.float32))).reshape(b, n)
            mask = torch.as_tensor(np.repeat(step_valid, d, axis=1))
            return ids.long(), mask
        seqs = self.action_tokenizer.encode(chunks.astype(np.float32), add_eos=True)
        ids = torch.full((b, n), self.eos_id, dtype=torch.long)
        mask = torch.zeros(b, n, dtype=torch.bool)
        for i, s in enumerate(seqs):
            if len(s) > n:
                raise ValueError(f"FAST chunk needs {len(s)} tokens (incl. EOS) > ActionConfig.fast_max_tokens+1={n}")
            ids[i, : len(s)] = torch.as_tensor(s)
            mask[i, : len(s)] = True
        return ids, mask

    def ids_to_actions(self, ids: torch.Tensor | list) -> np.ndarray:
        """Decoded ids -> unnormalized float32 [B, H, D]; chunks that do not decode are NaN (and counted)."""
        h, d = self.cfg.action.horizon, self.cfg.action.dim
        if self.cfg.action.tokenizer == "bins":
            arr = ids.detach().cpu().numpy().reshape(-1, h, d)
            dec = self.action_tokenizer.decode(arr, strict=False)  # valid [B, H]
            valid = dec.valid.all(axis=1)
        else:
            seqs = [list(r) for r in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
            dec = self.action_tokenizer.decode(seqs, strict=False)  # valid [B]
            valid = dec.valid
        acts = np.asarray(self._normalizer("action").unnormalize(dec.actions.astype(np.float64)), dtype=np.float32)
        acts[~valid] = np.nan
        self.invalid_chunks += int((~valid).sum())
        return acts

    # ---- model ----------------------------------------------------------------------------

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def embed_prefix(self, pixel_values: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                     state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (embeddings [B, L, D], valid [B, L]) for [visual][prompt][state][pointer]."""
        b, c = pixel_values.shape[:2]
        txt = self.embed_tokens(prompt_ids)  # [B, T, D]
        feats = self.vision(pixel_values.flatten(0, 1))  # [B*C, P, Dv]
        if self.film is not None:
            feats = self.film(feats, txt, prompt_ids, prompt_mask, c)
        vis = self.projector(feats).reshape(b, c * self.projector.num_tokens, -1)  # [B, C*K, D]
        if self.visual_pos is not None:
            vis = vis + self.visual_pos.to(vis.dtype)
        parts = [vis.to(txt.dtype), txt]
        valid = [torch.ones(b, vis.shape[1], dtype=torch.bool, device=txt.device), prompt_mask.bool()]
        if self.cfg.use_state:
            if state is None:
                raise ValueError("VLAConfig.use_state=True but no state was given")
            parts.append(self.state_proj(state.to(self.state_proj.weight.dtype))[:, None].to(txt.dtype))  # [B, 1, D]
            valid.append(torch.ones(b, 1, dtype=torch.bool, device=txt.device))
        if self.cfg.pointer_token:  # the soft pointer's pick (the auxiliary loss trains the same weights)
            parts.append(self.visual_pointer(vis)[:, None].to(txt.dtype))  # [B, 1, D]
            valid.append(torch.ones(b, 1, dtype=torch.bool, device=txt.device))
        return torch.cat(parts, 1), torch.cat(valid, 1)

    def visual_pointer(self, vis: torch.Tensor) -> torch.Tensor:
        """aux_source="visual": image tokens [B, C*K, D] -> their softmax(aux_score)-weighted average [B, D]
        (float32). The auxiliary head reads it in training; with pointer_token the LM reads it as a token."""
        w = torch.softmax(self.aux_score(vis).float(), dim=1)  # [B, C*K, 1]
        return (w * vis.float()).sum(1)

    def sequence_mask(self, valid: torch.Tensor, prefix_len: int, bidirectional_tail: bool = False) -> torch.Tensor:
        """bool [B, 1, T, T] attention layout of [prefix: prefix_len][tail] over `valid` [B, T]: causal, the
        prefix bidirectional with `prefix_attention: bidirectional`, the tail bidirectional if asked (OFT slots).
        Training, every decoding path and the exported graphs build their masks here."""
        return attention_mask_4d(valid, action_start=prefix_len, bidirectional_tail=bidirectional_tail,
                                 bidirectional_prefix=self.cfg.prefix_attention == "bidirectional")

    def lm_mask(self, mask4d: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Boolean 4-D mask -> what the LM attention implementation takes (eager adds a float mask)."""
        if self.cfg.lm.attn_implementation == "sdpa":
            return mask4d
        return torch.zeros(mask4d.shape, dtype=dtype, device=mask4d.device).masked_fill(~mask4d, torch.finfo(dtype).min)

    def forward(self, pixel_values: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                state: torch.Tensor | None = None, action_ids: torch.Tensor | None = None,
                mode: str | None = None, compact: bool = True,
                return_hidden: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits [B, n, V] for the n action slots (teacher-forced `action_ids` [B, n] in AR mode).

        compact=False keeps the static layout (data-independent shapes, for ONNX export / tracing).
        return_hidden=True also returns the LM's last hidden states at those positions [B, n, D] and the image
        tokens as the LM receives them [B, C*K, D].
        """
        mode = mode or self.cfg.action.decoding
        prefix, valid = self.embed_prefix(pixel_values, prompt_ids, prompt_mask, state)
        if compact:  # drop prompt columns that are padding in every row: same result, shorter sequence
            keep = valid.any(0)
            if not bool(keep.all()):
                prefix, valid = prefix[:, keep], valid[:, keep]
        b, L = valid.shape
        n = self.num_action_tokens
        if mode == "parallel":
            tail = self.action_slots.to(prefix.dtype).unsqueeze(0).expand(b, -1, -1)  # [B, n, D]
            bidir = self.cfg.action.parallel_attention == "bidirectional"
        elif mode == "autoregressive":
            if action_ids is None:
                raise ValueError("autoregressive forward needs action_ids (teacher forcing); use decoding for inference")
            tail = self.embed_tokens(action_ids[:, :-1])  # [B, n-1, D]
            bidir = False
        else:
            raise ValueError(f"unknown decoding mode {mode!r}")
        x = torch.cat([prefix, tail], 1)  # [B, L + n(-1), D]
        v = torch.cat([valid, torch.ones(b, tail.shape[1], dtype=torch.bool, device=valid.device)], 1)
        mask = self.sequence_mask(v, L, bidirectional_tail=bidir)
        out = self.lm(inputs_embeds=x, attention_mask=self.lm_mask(mask, x.dtype), position_ids=position_ids(v),
                      use_cache=False, logits_to_keep=n, output_hidden_states=return_hidden)
        if return_hidden:
            vis = prefix[:, : self.num_visual_tokens]  # [B, C*K, D]: the prefix starts with the image tokens
            return out.logits, out.hidden_states[-1][:, -n:], vis  # [B, n, V], [B, n, D], [B, C*K, D]
        return out.logits  # [B, n, V]

    def restrict(self, logits: torch.Tensor) -> torch.Tensor:
        """Non-action ids -> -inf (float32), so argmax / softmax only see the action block."""
        return logits.float().masked_fill(~self.action_logit_mask, float("-inf"))

    def compute_loss(self, batch: dict[str, torch.Tensor], mode: str | None = None,
                     aux_weight: float = 0.0, bin_sigma: float = 0.0) -> tuple[torch.Tensor, dict]:
        """Cross-entropy on supervised action slots only; returns (loss, {"loss", "token_acc", "n_tokens"}).

        bin_sigma > 0 (bins tokenizer only) replaces the one-hot target by a Gaussian over neighbouring bins
        (std in bins), so a near miss costs less than a far one: the bins are ordered values, and the ordinal
        signal speeds up learning on small datasets. Decoding is unchanged (argmax over the same ids).

        With an auxiliary head, `aux_weight` > 0 and a normalized `env_state` [B, E] in the batch, the loss
        adds aux_weight * MSE(head(pooled), env_state), pooled = the mean of the action slots' hidden states
        (aux_source "actions") or the soft-pointer average of the image tokens ("visual"); stats get "aux_mse"
        ("loss" stays the action cross-entropy, comparable across runs).
        """
        if bin_sigma > 0 and self.cfg.action.tokenizer != "bins":
            raise ValueError("bin_sigma > 0 needs the bins tokenizer (FAST tokens are not ordered values)")
        use_aux = self.aux_head is not None and aux_weight > 0 and "env_state" in batch
        out = self.forward(batch["pixel_values"], batch["prompt_ids"], batch["prompt_mask"], batch.get("state"),
                           batch["action_ids"], mode=mode, return_hidden=use_aux)
        logits, hidden, vis = out if use_aux else (out, None, None)
        logits = self.restrict(logits)  # [B, n, V]
        sup = batch["action_mask"]  # [B, n]
        tgt = batch["action_ids"]
        if bin_sigma > 0:
            ce = self._soft_bin_loss(logits[sup], tgt[sup], bin_sigma)
        else:
            ce = F.cross_entropy(logits[sup], tgt[sup])
        with torch.no_grad():
            acc = (logits.argmax(-1) == tgt)[sup].float().mean()
        stats = {"loss": float(ce.detach()), "token_acc": float(acc), "n_tokens": int(sup.sum())}
        if not use_aux:
            return ce, stats
        if self.aux_score is not None:  # soft pointer over the image tokens
            pooled = self.visual_pointer(vis)  # [B, D]
        else:
            pooled = hidden.float().mean(1)  # [B, D]
        pred = self.aux_head(pooled.to(self.aux_head.weight.dtype)).float()  # [B, E]
        aux = F.mse_loss(pred, batch["env_state"].float())
        stats["aux_mse"] = float(aux.detach())
        return ce + aux_weight * aux, stats

    def _soft_bin_loss(self, logits: torch.Tensor, tgt: torch.Tensor, sigma: float) -> torch.Tensor:
        """Cross-entropy against a Gaussian over the action block: logits [N, V] (restricted), tgt [N] ids."""
        r = self.cfg.action.num_reserved_ids
        start = self.vocab_size - r
        logp = F.log_softmax(logits[:, start:].float(), -1)  # [N, R] the action block (adjacent ids = adjacent bins)
        k = torch.arange(r, device=logits.device, dtype=torch.float32)
        soft = torch.softmax(-0.5 * ((k[None] - (tgt - start)[:, None].float()) / sigma) ** 2, -1)  # [N, R]
        return -(soft * logp).sum(-1).mean()

    # ---- inference ------------------------------------------------------------------------

    @torch.no_grad()
    def predict_action_batch(self, observations: Sequence[dict], mode: str | None = None) -> np.ndarray:
        """Observation dicts -> float32 [B, H, D] in robot units (NaN rows for chunks that failed to decode)."""
        from vla.model.decoding import decode

        was_training = self.training
        self.eval()
        try:
            inputs = self.prepare_observations(observations)
            ids = decode(self, inputs, mode=mode)
        finally:
            self.train(was_training)
        return self.ids_to_actions(ids)

    def predict_action(self, obs: dict, mode: str | None = None) -> np.ndarray:
        """One observation dict -> float32 [H, D] in robot units."""
        return self.predict_action_batch([obs], mode=mode)[0]

    # ---- persistence ----------------------------------------------------------------------

    def resolved_config(self) -> VLAConfig:
        """The config with pretrained dirs replaced by their resolved transformers configs."""
        from dataclasses import replace

        lm_d = self.lm.config.to_dict()
        for k in ("transformers_version", "architectures", "_name_or_path", "model_type", "torch_dtype", "dtype",
                  "vocab_size"):
            lm_d.pop(k, None)
        cfg = self.cfg
        return replace(
            cfg,
            vision=replace(cfg.vision, pretrained=None, hf_config=self.vision.hf_config_dict()),
            lm=replace(cfg.lm, pretrained=None, hf_config=lm_d),
            text=replace(cfg.text, path=None),
        )

    def save_pretrained(self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """config.json, model.safetensors, tokenizer files, norm_stats.json; atomic.

        `state_dict` replaces this module's weights in the file (training passes LoRA-merged weights).
        """
        from safetensors.torch import save_file

        from vla.normalization import save_norm_stats

        directory = Path(directory)
        meta = {
            "format": CONFIG_FORMAT,
            "policy": self.resolved_config().to_dict(),
            "text_vocab_size": self.text_vocab_size,
            "vocab_size": self.vocab_size,
            "action_tokenizer": self.action_tokenizer.to_config()
            if self.cfg.action.tokenizer == "bins" or self.action_tokenizer.fitted else None,
        }
        with atomic_directory(directory) as tmp:
            (tmp / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
            sd = state_dict if state_dict is not None else self.state_dict()
            # clone: tied weights share storage, which safetensors refuses; both names are stored
            save_file({k: v.detach().cpu().clone() for k, v in sd.items()}, str(tmp / "model.safetensors"))
            self.text_tokenizer.save(tmp)
            if self.normalizers:
                save_norm_stats(tmp / "norm_stats.json", self.normalizers)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu") -> VLAPolicy:
        from safetensors.torch import load_file

        from vla.normalization import load_norm_stats
        from vla.tokenizers import tokenizer_from_config

        directory = Path(directory)
        cfg_path = directory / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{cfg_path}: not a policy checkpoint (no config.json)")
        meta = json.loads(cfg_path.read_text())
        if meta.get("format") != CONFIG_FORMAT:
            raise ValueError(f"{cfg_path}: format {meta.get('format')!r}, expected {CONFIG_FORMAT!r}")
        cfg = VLAConfig.from_dict(meta["policy"])
        text = TextTokenizer.load(directory, cfg.text.kind, int(meta["text_vocab_size"]))
        tok = tokenizer_from_config(meta["action_tokenizer"]) if meta.get("action_tokenizer") else None
        policy = cls(cfg, text, int(meta["text_vocab_size"]), action_tokenizer=tok)
        weights = directory / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: checkpoint has no weights")
        policy.load_state_dict(load_file(str(weights), device=map_location), strict=True)
        if (directory / "norm_stats.json").is_file():
            norms = load_norm_stats(directory / "norm_stats.json")
            policy.set_normalizers(norms["action"], norms.get("observation.state"))
            for k, v in norms.items():  # e.g. the auxiliary head's task-state stats (resume needs them)
                policy.normalizers.setdefault(k, v)
        policy.eval()
        return policy
