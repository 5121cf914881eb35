"""The unified-sequence VLA policy: vision tower -> projector -> one causal LM -> action tokens.
Weights and the maths only: embed / forward / loss. The transforms between observations and tensors are
`vla.policy_io.PolicyIO` (numpy, shared by training and every runtime); running the policy on
observations is `vla.model.runtime.TorchRuntime`; decoding is `vla.model.decoding`.

    policy = VLAPolicy.from_config(VLAConfig(), instructions=tasks)   # fresh; the embedded BPE is trained on tasks
    io = policy.make_io({"action": Normalizer(...), "observation.state": Normalizer(...)})   # training fits these
    loss, stats = policy.compute_loss(batch)
    policy.save_pretrained("runs/x/checkpoint", io); VLAPolicy.from_pretrained("runs/x/checkpoint")

Sequence (static layout, see `vla.config`):
    [visual: C * K][prompt: T, left-padded][state: 0/1][action slots: n]
Fusion (`VLAConfig.fusion`, `vla.model.fusion`): `early` is that sequence; `cross_attention` and `late` keep
the visual tokens out of it ([prompt][state][slots]) and read them through a per-observation context of
tensors (`embed_observation` -> ctx) made active by `fusion_context(ctx)` around every LM call.
- autoregressive: the slots hold the previous action tokens (teacher forcing); the logits at the position
  before each slot predict it; decoding runs a KV-cached loop (`vla.model.decoding`).
- parallel (OpenVLA-OFT): the slots hold learned placeholder embeddings, one per slot; the logits at each
  slot predict that slot's token, all n in one forward pass. `action.parallel_attention` chooses whether
  the slots see each other both ways (bidirectional, default, as OFT) or causally.
Logits are restricted to the reserved action-id block both in the loss and when decoding.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vla.config import VLAConfig
from vla.io import atomic_directory, read_json
from vla.meta import check_safetensors, read_meta, write_meta
from vla.model.film import InstructionFiLM
from vla.model.fusion import FUSION_MODES, TextGuidedEncoding
from vla.model.projectors import build_projector
from vla.model.sequence import attention_mask_4d, position_ids
from vla.model.text_encoder import TextEncoder, pretrained_dir
from vla.model.vision import VisionTower
from vla.normalization import Normalizer, save_norm_stats
from vla.policy_io import PolicyIO, build_action_tokenizer, build_prompt, load_text_tokenizer
from vla.text import TextTokenizer


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
    """Ids [0, n) belong to text; the action block follows. A pretrained LM keeps its whole vocabulary. With a
    text encoder the LM embeds no text (the prompt's ids are the encoder's): n = 0, the action block alone."""
    if cfg.text_encoder is not None and cfg.lm.pretrained is None:
        return 0
    if cfg.text.kind == "embedded":
        return cfg.text.vocab_size
    n = text.vocab_size
    if cfg.lm.pretrained is not None:
        from transformers import AutoConfig

        n = max(n, int(AutoConfig.from_pretrained(cfg.lm.pretrained, local_files_only=True).vocab_size))
    return n


class VLAPolicy(nn.Module):
    """See the module docstring. Build with `from_config` / `from_pretrained`, not the constructor.

    `text_tokenizer` / `action_tokenizer` are the vocabularies the embedding rows mean (saved with the
    weights); the transforms that use them are `PolicyIO` (`make_io`)."""

    def __init__(self, cfg: VLAConfig, text_tokenizer: TextTokenizer, text_vocab_size: int,
                 action_tokenizer: Any | None = None, vocab_size: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.text_tokenizer = text_tokenizer
        self.text_vocab_size = int(text_vocab_size)
        # vla's own layout appends the action block to the text ids; a converted checkpoint (action.block_end
        # set) keeps its LM's vocabulary, e.g. OpenVLA's 32064 rows with the block inside the text ids
        if vocab_size is None:
            if cfg.action.block_end is not None:
                raise ValueError("ActionConfig.block_end is set: VLAPolicy needs the LM's vocab_size")
            vocab_size = self.text_vocab_size + cfg.action.num_reserved_ids
        self.vocab_size = int(vocab_size)
        end = cfg.action.block_end or self.vocab_size
        if end > self.vocab_size:
            raise ValueError(f"ActionConfig.block_end={end} is past the LM vocabulary ({self.vocab_size} ids)")
        self.action_block = (end - cfg.action.num_reserved_ids, end)  # [lo, hi): the action ids
        self.action_tokenizer = action_tokenizer or build_action_tokenizer(cfg, self.vocab_size)
        self.vision = VisionTower(cfg.vision)
        self.lm = _build_lm(cfg, self.vocab_size)
        d = int(self.lm.config.hidden_size)
        self.hidden_size = d
        self.projector = build_projector(cfg.projector, in_dim=self.vision.hidden_size, out_dim=d,
                                         num_patches=self.vision.num_patches, grid=self.vision.grid)
        self.state_proj = nn.Linear(cfg.state_dim, d) if cfg.use_state else None
        n_vis = len(cfg.cameras) * self.projector.num_tokens
        # fusion: cross-attention blocks / the late-fusion head, hooked onto the LM (its modules untouched)
        self.fusion = self._build_fusion(cfg, d)
        self.text_guide = TextGuidedEncoding(d, self.vision) if cfg.fusion.text_guided else None
        # a pretrained sentence encoder embeds the prompt instead of the LM's table (vla.model.text_encoder)
        self.text_encoder = TextEncoder(cfg.text_encoder, d) if cfg.text_encoder is not None else None
        self.visual_pos = nn.Parameter(torch.randn(n_vis, d) * 0.02) if cfg.visual_pos_embed else None  # [C*K, D]
        # training-only auxiliary head on a soft pointer over the image tokens (vla.config.AuxConfig)
        self.aux_head = nn.Linear(d, cfg.aux.state_dim) if cfg.aux else None
        self.aux_score = nn.Linear(d, 1) if cfg.aux else None  # one pointer score per image token
        # film: the instruction scales and shifts the vision features (vla.model.film; identity at init)
        self.film = (InstructionFiLM(d, self.vision.hidden_size, self.prompt_vocab_size, cfg.film.pool_scale)
                     if cfg.film else None)
        n = cfg.action.num_action_tokens
        self.action_slots = nn.Parameter(torch.randn(n, d) * 0.02)  # [n, D] parallel-decoding placeholders
        block = torch.zeros(self.vocab_size, dtype=torch.bool)
        block[self.action_block[0]:self.action_block[1]] = True
        self.register_buffer("action_logit_mask", block, persistent=False)  # [V]

    def _build_fusion(self, cfg: VLAConfig, d: int) -> nn.Module | None:
        mode = cfg.fusion.mode
        if mode == "early":
            return None
        dec = self.lm.get_decoder()
        if mode == "cross_attention":
            fusion = FUSION_MODES[mode](cfg.fusion, d, int(self.lm.config.num_attention_heads), len(dec.layers))
            fusion.install(dec.layers)
        else:
            fusion = FUSION_MODES[mode](d, len(cfg.cameras), self.projector.num_tokens)
            fusion.install(dec.norm)
        return fusion

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg: VLAConfig, instructions: Sequence[str] = ()) -> VLAPolicy:
        """Fresh policy. The embedded text tokenizer is trained on the template + `instructions`; FiLM's
        prompt-pooling prior is fit on them too, so a FiLM policy needs them."""
        if cfg.text.kind == "embedded":
            text = TextTokenizer.train_embedded(cfg.text.vocab_size, list(instructions))
        elif cfg.text.kind == "tokenizer_json":
            path = cfg.text.path
            if path is None and cfg.text_encoder is not None and cfg.text_encoder.pretrained is not None:
                path = pretrained_dir(cfg.text_encoder.pretrained)  # the encoder's own tokenizer.json
            if path is None:
                raise ValueError("TextConfig.kind='tokenizer_json' needs text.path (a dir with tokenizer.json); "
                                 "converted checkpoints carry theirs (`vla convert`)")
            text = TextTokenizer.from_tokenizer_json(Path(path) / "tokenizer.json", cfg.text.vocab_size,
                                                     cfg.text.bos_id, cfg.text.pad_id)
        else:
            path = cfg.text.path or cfg.lm.pretrained
            if path is None:
                raise ValueError("TextConfig.kind='pretrained' needs text.path or lm.pretrained")
            text = TextTokenizer.from_pretrained_dir(path)
        policy = cls(cfg, text, _text_vocab_size(cfg, text))
        if policy.film is not None:
            if not instructions:
                raise ValueError("VLAConfig.film is set: from_config needs the training instructions (the pooling "
                                 "prior is their inverse document frequency); pass instructions=[...]")
            policy.film.set_idf([build_prompt(cfg, text, t) for t in sorted(set(instructions))])
        return policy

    def make_io(self, normalizers: Mapping[str, Normalizer]) -> PolicyIO:
        """The transforms of this policy with the given normalizers ("action", "observation.state", ...)."""
        return PolicyIO(self.cfg, self.text_tokenizer, self.action_tokenizer, dict(normalizers))

    @property
    def num_image_tokens(self) -> int:
        """Visual tokens the connector makes per observation (C * K), wherever fusion sends them."""
        return len(self.cfg.cameras) * self.projector.num_tokens

    @property
    def num_visual_tokens(self) -> int:
        """Visual tokens in the LM context: C * K for early fusion, 0 for cross-attention and late fusion."""
        return self.num_image_tokens if self.cfg.fusion.visual_in_sequence else 0

    @property
    def num_action_tokens(self) -> int:
        return self.cfg.action.num_action_tokens

    @property
    def prefix_len(self) -> int:
        return int(self.cfg.bos_before_visual) + self.num_visual_tokens + self.cfg.text.prompt_len + int(self.cfg.use_state)

    @property
    def score_range(self) -> tuple[int, int]:
        """[lo, hi): the ids greedy decoding ranks: the action block, or the whole vocabulary when
        `action.restrict_logits` is False (OpenVLA's unrestricted argmax)."""
        return self.action_block if self.cfg.action.restrict_logits else (0, self.vocab_size)

    @property
    def eos_id(self) -> int | None:
        """FAST ends a chunk with an end token; bins have a fixed length."""
        return self.action_tokenizer.eos_id if self.cfg.action.tokenizer == "fast" else None

    # ---- model ----------------------------------------------------------------------------

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    @property
    def prompt_vocab_size(self) -> int:
        """The id range of prompt tokens: the text encoder's vocabulary when there is one, else the LM's."""
        return self.text_encoder.vocab_size if self.text_encoder is not None else self.vocab_size

    def embed_prompt(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """prompt_ids, prompt_mask [B, T] -> [B, T, D]: the LM's embeddings, or the text encoder's features."""
        if self.text_encoder is not None:
            return self.text_encoder(prompt_ids, prompt_mask).to(self.lm.get_input_embeddings().weight.dtype)
        return self.embed_tokens(prompt_ids)

    def embed_prefix(self, pixel_values: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                     state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (embeddings [B, L, D], valid [B, L]) for [visual][prompt][state] (cross-attention / late
        fusion: [prompt][state]; the LM then also needs `embed_observation`'s context)."""
        return self.embed_observation(pixel_values, prompt_ids, prompt_mask, state)[:2]

    def image_features(self, pixel_values: torch.Tensor, txt: torch.Tensor, prompt_ids: torch.Tensor,
                       prompt_mask: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, C, 3, S, S], prompt embeddings txt [B, T, D] -> what the connector takes [B*C, P, Dv]:
        the tower's patch features (TUNE: with the prompt inside the ViT), FiLM'd on the instruction if set."""
        c = pixel_values.shape[1]
        if self.text_guide is not None:  # TUNE: the prompt runs through the ViT's layers with the patches
            feats = self.text_guide(self.vision, pixel_values.flatten(0, 1), txt.repeat_interleave(c, 0),
                                    prompt_mask.bool().repeat_interleave(c, 0))  # [B*C, P, Dv]
        else:
            feats = self.vision(pixel_values.flatten(0, 1))  # [B*C, P, Dv]
        if self.film is not None:
            feats = self.film(feats, txt, prompt_ids, prompt_mask, c)
        return feats

    def connect(self, feats: torch.Tensor, txt: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """The connector: feats [B*C, P, Dv] -> tokens [B*C, K, D] (an instruction-aware one gets the prompt per camera)."""
        if getattr(self.projector, "takes_text", False):
            c = feats.shape[0] // txt.shape[0]
            return self.projector(feats, txt.repeat_interleave(c, 0), prompt_mask.bool().repeat_interleave(c, 0))
        return self.projector(feats)

    def embed_observation(self, pixel_values: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                          state: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """-> (prefix [B, L, D], valid [B, L], visual tokens [B, C*K, D], fusion context {name: tensor}).

        The context is what the fusion mode computes once per observation (`vla.model.fusion`): nothing for
        early fusion, the blocks' visual keys / values for cross-attention, the pooled vision for late."""
        b, c = pixel_values.shape[:2]
        txt = self.embed_prompt(prompt_ids, prompt_mask)  # [B, T, D]
        vis = self.connect(self.image_features(pixel_values, txt, prompt_ids, prompt_mask), txt, prompt_mask)
        vis = vis.reshape(b, c * self.projector.num_tokens, -1)  # [B, C*K, D]
        if self.visual_pos is not None:
            vis = vis + self.visual_pos.to(vis.dtype)
        vis = vis.to(txt.dtype)
        if self.fusion is None:
            parts = [vis, txt]
            valid = [torch.ones(b, vis.shape[1], dtype=torch.bool, device=txt.device), prompt_mask.bool()]
            ctx: dict[str, torch.Tensor] = {}
        else:
            parts, valid = [txt], [prompt_mask.bool()]
            ctx = self.fusion.context(vis)
        if self.cfg.bos_before_visual:  # Prismatic: [BOS][visual][prompt]
            bos = torch.full((b, 1), self.cfg.text.bos_id, dtype=prompt_ids.dtype, device=prompt_ids.device)
            parts.insert(0, self.embed_tokens(bos))  # [B, 1, D]
            valid.insert(0, torch.ones(b, 1, dtype=torch.bool, device=txt.device))
        if self.cfg.use_state:
            if state is None:
                raise ValueError(f"VLAConfig.state_dim={self.cfg.state_dim} but no state was given")
            parts.append(self.state_proj(state.to(self.state_proj.weight.dtype))[:, None].to(txt.dtype))  # [B, 1, D]
            valid.append(torch.ones(b, 1, dtype=torch.bool, device=txt.device))
        return torch.cat(parts, 1), torch.cat(valid, 1), vis, ctx

    @contextmanager
    def fusion_context(self, ctx: dict[str, torch.Tensor]) -> Iterator[None]:
        """While inside, the LM's fusion hooks read `ctx` (from `embed_observation`; the exported graphs pass
        their inputs). Early fusion: nothing to do. One observation batch at a time per policy (not re-entrant
        across threads)."""
        if self.fusion is None:
            yield
            return
        missing = [k for k in self.fusion.context_names if k not in ctx]
        if missing:
            raise ValueError(f"fusion.mode {self.cfg.fusion.mode!r}: the context lacks {missing}")
        prev, self.fusion.active = self.fusion.active, ctx
        try:
            yield
        finally:
            self.fusion.active = prev

    def visual_pointer(self, vis: torch.Tensor) -> torch.Tensor:
        """Image tokens [B, C*K, D] -> their softmax(aux_score)-weighted average [B, D] (float32), which the
        auxiliary head reads in training."""
        w = torch.softmax(self.aux_score(vis).float(), dim=1)  # [B, C*K, 1]
        return (w * vis.float()).sum(1)

    def sequence_mask(self, valid: torch.Tensor, prefix_len: int, bidirectional_tail: bool = False) -> torch.Tensor:
        """bool [B, 1, T, T] attention layout of [prefix: prefix_len][tail] over `valid` [B, T]: causal, the
        tail bidirectional if asked (OFT slots). Training, every decoding path and the exported graphs build
        their masks here."""
        return attention_mask_4d(valid, action_start=prefix_len, bidirectional_tail=bidirectional_tail)

    def lm_mask(self, mask4d: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Boolean 4-D mask -> what the LM attention implementation takes (eager adds a float mask)."""
        if self.cfg.lm.attn_implementation == "sdpa":
            return mask4d
        return torch.zeros(mask4d.shape, dtype=dtype, device=mask4d.device).masked_fill(~mask4d, torch.finfo(dtype).min)

    def forward(self, pixel_values: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                state: torch.Tensor | None = None, action_ids: torch.Tensor | None = None,
                mode: str | None = None, compact: bool = True, return_visual: bool = False,
                given: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, n, V] for the n action slots (teacher-forced `action_ids` [B, n] in AR mode).

        compact=False keeps the static layout (data-independent shapes, for ONNX export / tracing).
        return_visual=True also returns the image tokens as fusion receives them [B, C*K, D].
        given [B, n] bool (parallel, `action.prefix_conditioning`): the slots whose ids `action_ids` holds are
        given (`slot_inputs`); None: none is.
        """
        mode = mode or self.cfg.action.decoding
        prefix, valid, vis, ctx = self.embed_observation(pixel_values, prompt_ids, prompt_mask, state)
        if compact:  # drop prompt columns that are padding in every row: same result, shorter sequence
            keep = valid.any(0)
            if not bool(keep.all()):
                prefix, valid = prefix[:, keep], valid[:, keep]
        b, L = valid.shape
        n = self.num_action_tokens
        if mode == "parallel":
            tail = self.slot_inputs(b, prefix.dtype, action_ids, given)  # [B, n, D]
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
        with self.fusion_context(ctx):
            out = self.lm(inputs_embeds=x, attention_mask=self.lm_mask(mask, x.dtype), position_ids=position_ids(v),
                          use_cache=False, logits_to_keep=n)
        if return_visual:  # [B, n, V], [B, C*K, D] (the image tokens as fusion receives them)
            return out.logits, vis
        return out.logits  # [B, n, V]

    def slot_inputs(self, batch: int, dtype: torch.dtype, ids: torch.Tensor | None = None,
                    given: torch.Tensor | None = None) -> torch.Tensor:
        """The parallel decoder's slot embeddings [B, n, D]: the learned placeholders, plus, where `given`
        [B, n] is True, the embedding of the slot's id in `ids` [B, n] (prefix conditioning: the first k
        slots carry the committed actions' tokens). Training, decoding and the exported graph build them here."""
        tail = self.action_slots.to(dtype).unsqueeze(0).expand(batch, -1, -1)  # [B, n, D]
        if given is None:
            return tail
        if self.cfg.action.prefix_conditioning <= 0:
            raise ValueError("given action slots need a policy trained with action.prefix_conditioning > 0; this one "
                             "was not (its slots are placeholders: forced ids would only be overwritten)")
        if ids is None:
            raise ValueError("given action slots need their ids (action_ids [B, n])")
        lo, _ = self.action_block
        safe = torch.where(given, ids, torch.full_like(ids, lo))  # ungiven slots: any valid id, masked out below
        return tail + given[..., None].to(dtype) * self.embed_tokens(safe).to(dtype)  # [B, n, D]

    def restrict(self, logits: torch.Tensor) -> torch.Tensor:
        """Non-action ids -> -inf (float32), so argmax / softmax only see the action block; with
        `action.restrict_logits` False the logits as they are (float32): the whole vocabulary competes."""
        if not self.cfg.action.restrict_logits:
            return logits.float()
        return logits.float().masked_fill(~self.action_logit_mask, float("-inf"))

    def given_slots(self, batch: dict[str, torch.Tensor], mode: str) -> torch.Tensor | None:
        """Prefix conditioning in training: batch["given_steps"] [B] (steps whose tokens the slots are given,
        `vla.train.data.make_batch` samples them) -> given [B, n] bool; None when the batch has none."""
        steps = batch.get("given_steps")
        if steps is None or mode != "parallel":
            return None
        return self.first_slots(steps.long() * self.cfg.action.dim)

    def first_slots(self, counts: torch.Tensor) -> torch.Tensor:
        """counts [B] (tokens) -> bool [B, n]: row b's first counts[b] action slots (the given prefix)."""
        return torch.arange(self.num_action_tokens, device=counts.device)[None, :] < counts[:, None]

    def compute_loss(self, batch: dict[str, torch.Tensor], mode: str | None = None,
                     bin_sigma: float = 0.0) -> tuple[torch.Tensor, dict]:
        """Cross-entropy on supervised action slots only; returns (loss, {"loss", "token_acc", "n_tokens"}).

        bin_sigma > 0 (bins tokenizer only) replaces the one-hot target by a Gaussian over neighbouring bins
        (std in bins), so a near miss costs less than a far one: the bins are ordered values, and the ordinal
        signal speeds up learning on small datasets. Decoding is unchanged (argmax over the same ids).

        With an auxiliary head (`VLAConfig.aux`) the batch must hold the normalized task state `env_state`
        [B, E] (a missing one is an error, never a silently dropped loss): the loss adds
        aux.weight * MSE(head(pointer), env_state), pointer = the soft-pointer average of the image tokens;
        stats get "aux_mse" ("loss" stays the action cross-entropy, comparable across runs).
        """
        if bin_sigma > 0 and self.cfg.action.tokenizer != "bins":
            raise ValueError("bin_sigma > 0 needs the bins tokenizer (FAST tokens are not ordered values)")
        use_aux = self.aux_head is not None
        if use_aux and "env_state" not in batch:
            raise ValueError("VLAConfig.aux is set but the batch has no 'env_state' (observation.environment_state); "
                             "train on data that records it, or set aux: null")
        given = self.given_slots(batch, mode or self.cfg.action.decoding)  # [B, n] bool or None
        slots = batch["action_ids"] if given is None else batch.get("slot_ids", batch["action_ids"])  # noisy if asked
        out = self.forward(batch["pixel_values"], batch["prompt_ids"], batch["prompt_mask"], batch.get("state"),
                           slots, mode=mode, return_visual=use_aux, given=given)
        logits, vis = out if use_aux else (out, None)
        logits = self.restrict(logits)  # [B, n, V]
        sup = batch["action_mask"] if given is None else batch["action_mask"] & ~given  # [B, n]: given slots unscored
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
        pooled = self.visual_pointer(vis)  # [B, D] soft pointer over the image tokens
        pred = self.aux_head(pooled.to(self.aux_head.weight.dtype)).float()  # [B, E]
        aux = F.mse_loss(pred, batch["env_state"].float())
        stats["aux_mse"] = float(aux.detach())
        return ce + self.cfg.aux.weight * aux, stats

    def _soft_bin_loss(self, logits: torch.Tensor, tgt: torch.Tensor, sigma: float) -> torch.Tensor:
        """Cross-entropy against a Gaussian over the action block: logits [N, V] (restricted), tgt [N] ids."""
        r = self.cfg.action.num_reserved_ids
        start = self.action_block[0]
        logp = F.log_softmax(logits[:, start:start + r].float(), -1)  # [N, R] the action block (adjacent ids = adjacent bins)
        k = torch.arange(r, device=logits.device, dtype=torch.float32)
        soft = torch.softmax(-0.5 * ((k[None] - (tgt - start)[:, None].float()) / sigma) ** 2, -1)  # [N, R]
        return -(soft * logp).sum(-1).mean()

    # ---- persistence ----------------------------------------------------------------------

    def resolved_config(self) -> VLAConfig:
        """The config with pretrained dirs replaced by their resolved transformers configs."""
        from dataclasses import replace

        lm_d = self.lm.config.to_dict()
        for k in ("transformers_version", "architectures", "_name_or_path", "model_type", "torch_dtype", "dtype",
                  "vocab_size"):
            lm_d.pop(k, None)
        cfg = self.cfg
        fused = self.vision.fused_tower
        if fused is not None:
            fused = replace(cfg.vision.fused, pretrained=None, hf_config=fused.hf_config_dict())
        enc = cfg.text_encoder
        if enc is not None:
            enc = replace(enc, pretrained=None, hf_config=self.text_encoder.hf_config_dict())
        return replace(
            cfg,
            vision=replace(cfg.vision, pretrained=None, hf_config=self.vision.hf_config_dict(), fused=fused),
            lm=replace(cfg.lm, pretrained=None, hf_config=lm_d),
            text=replace(cfg.text, path=None),
            text_encoder=enc,
        )

    def save_pretrained(self, directory: str | Path, io: PolicyIO | None = None,
                        state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """config.json, model.safetensors, tokenizer files, norm_stats.json (from `io`); atomic.

        `state_dict` replaces this module's weights in the file (training passes LoRA-merged weights; the
        exporter an empty dict for a weightless transforms-only directory)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        tok = self.action_tokenizer
        with atomic_directory(directory) as tmp:
            write_meta(tmp, self.resolved_config(), self.text_vocab_size, self.vocab_size,
                       tok.to_config() if self.cfg.action.tokenizer == "bins" or tok.fitted else None)
            sd = state_dict if state_dict is not None else self.state_dict()
            if sd or state_dict is None:
                # clone: tied weights share storage, which safetensors refuses; both names are stored
                save_file({k: v.detach().cpu().clone() for k, v in sd.items()}, str(tmp / "model.safetensors"))
            self.text_tokenizer.save(tmp)
            if io is not None:
                save_norm_stats(tmp / "norm_stats.json", io.normalizers)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu",
                        dtype: torch.dtype | None = None) -> VLAPolicy:
        """The weights of a checkpoint dir (`PolicyIO.load` reads its transforms), in the dtype they were
        saved in (vla's own: float32; a converted checkpoint: what `vla convert --dtype` wrote) unless
        `dtype` is given. The module is built with its parameters on the meta device and the file's
        tensors assigned to it, so loading needs the checkpoint's size in memory once, not twice (nor a
        random initialisation of a 7B model). Sharded checkpoints (`model.safetensors.index.json`) load too."""
        directory = Path(directory)
        meta = read_meta(directory)
        text = load_text_tokenizer(directory, meta.cfg, meta.text_vocab_size)
        tok = build_action_tokenizer(meta.cfg, meta.vocab_size, meta.action_tokenizer)
        with _parameters_on_meta():
            policy = cls(meta.cfg, text, meta.text_vocab_size, action_tokenizer=tok,
                         vocab_size=None if meta.cfg.action.block_end is None else meta.vocab_size)
        state, source = load_weights(directory, map_location)
        own = policy.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"{source} does not match its config.json: missing {missing[:5]}, unexpected {unexpected[:5]}")
        bad = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
        if bad:
            raise ValueError(f"{source} does not match its config.json: {bad[0]} has shape "
                             f"{tuple(state[bad[0]].shape)}, the config builds {tuple(own[bad[0]].shape)}")
        policy.load_state_dict(state, strict=True, assign=True)
        if getattr(policy.lm.config, "tie_word_embeddings", False):
            policy.lm.tie_weights()  # assign=True gave the two names separate tensors
        policy.to(map_location)  # buffers built in __init__ (masks, rotary tables) follow the weights
        if dtype is not None:
            _cast_keeping_rotary(policy, dtype)
        policy.eval()
        return policy


def _cast_keeping_rotary(policy: nn.Module, dtype: torch.dtype) -> None:
    """`policy.to(dtype)`, except the rotary frequency tables (`inv_freq`), which transformers (and OpenVLA's
    reference) keep in float32: in fp16 / bf16 they would shift the angles at a 300-token position by up to
    0.07 / 0.37 rad."""
    kept = [(m, k, b.clone()) for m in policy.modules() for k, b in m._buffers.items()
            if b is not None and k in ("inv_freq", "original_inv_freq")]
    policy.to(dtype)
    for m, k, b in kept:
        m._buffers[k] = b


_META_LOCK = threading.Lock()


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Every parameter registered inside is moved to the meta device (buffers stay real), so building a
    module costs no memory and no initialisation; `load_state_dict(assign=True)` then gives it weights.
    It patches `nn.Module.register_parameter` for the process while inside: loads take a lock so two
    threads loading policies do not interleave (a module built by other code meanwhile would get meta
    parameters: build nothing else concurrently with a load)."""
    _META_LOCK.acquire()
    register = nn.Module.register_parameter

    def on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register
        _META_LOCK.release()


SHARD_INDEX = "model.safetensors.index.json"


def load_weights(directory: str | Path, map_location: str = "cpu") -> tuple[dict[str, torch.Tensor], Path]:
    """The tensors of `model.safetensors`, or of every shard `model.safetensors.index.json` names ->
    (state dict, the file named in errors). Each file is checked first (`check_safetensors`)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    index = directory / SHARD_INDEX
    if index.is_file():
        weight_map = read_json(index, f"{index}: missing").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index}: no 'weight_map'")
        files, source = sorted(set(weight_map.values())), index
    else:
        files, source = ["model.safetensors"], directory / "model.safetensors"
    state: dict[str, torch.Tensor] = {}
    for name in files:
        path = directory / name
        check_safetensors(path)
        try:
            part = load_file(str(path), device=map_location)
        except Exception as e:  # safetensors' own errors carry no file name
            raise ValueError(f"{path}: cannot be read as safetensors ({e})") from None
        if index.is_file():
            wrong = [k for k in part if weight_map.get(k) != name]
            if wrong:
                raise ValueError(f"{path}: holds {wrong[0]!r}, which {index.name} places elsewhere")
        state.update(part)
    if index.is_file() and set(state) != set(weight_map):
        lost = sorted(set(weight_map) - set(state))
        raise ValueError(f"{index}: names tensors no shard holds, e.g. {lost[:3]}")
    return state, source
