"""Typed, frozen configuration of a unified-sequence VLA policy, and its dummy input.

    cfg = VLAConfig.from_yaml("configs/model/tiny.yaml")      # or VLAConfig.from_dict({...})
    batch = cfg.example_batch(batch_size=2)                   # tensors for tests / ONNX tracing
    cfg.to_dict()                                             # JSON-safe; saved as config.json

The sequence the causal LM sees (static layout, so it traces and exports cleanly):

    [visual tokens: n_cameras * tokens_per_camera][prompt: prompt_len, left-padded][state: 0 or 1][action slots]

Prompt padding sits in the middle of the sequence; a 4-D attention mask hides it and position ids skip
it (`vla.model.sequence`), so a padded row computes exactly what the unpadded row would.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# OpenVLA's prompt; `{instruction}` is the task string as given (stripped, not lower-cased).
OPENVLA_PROMPT = "In: What action should the robot take to {instruction}?\nOut:"

PROJECTOR_TYPES = ("linear", "mlp", "pixel_shuffle", "resampler")
DECODING_MODES = ("autoregressive", "parallel")


def _err(cls: str, name: str, value: Any, why: str) -> ValueError:
    return ValueError(f"{cls}.{name}={value!r}: {why}")


@dataclass(frozen=True)
class VisionConfig:
    """Vision tower: any `transformers` vision model, built from `hf_config` or a local pretrained dir."""

    model_type: str = "siglip_vision_model"
    pretrained: str | None = None  # local directory; None = build from hf_config (random init)
    hf_config: dict[str, Any] = field(default_factory=dict)  # kwargs of the transformers config class
    image_size: int = 32  # square input resolution fed to the tower (images are resized to it)
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # SigLIP's normalization
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    drop_cls: bool = False  # drop the first output token (CLIP-style towers prepend a CLS token)
    # CoordConv: append x and y pixel-coordinate channels (in [-1, 1]) to the image, so features know exactly
    # where in the image they are (a conv net alone is nearly translation-equivariant); built-from-config only
    coord_channels: bool = False

    def __post_init__(self) -> None:
        if self.coord_channels and self.pretrained is not None:
            raise _err("VisionConfig", "coord_channels", True,
                       "needs a tower built from hf_config (a pretrained tower's first layer takes 3 channels)")
        if self.image_size < 8:
            raise _err("VisionConfig", "image_size", self.image_size, "must be >= 8 pixels")
        for name in ("image_mean", "image_std"):
            v = getattr(self, name)
            if len(v) != 3:
                raise _err("VisionConfig", name, v, "needs one value per RGB channel")
        if any(s <= 0 for s in self.image_std):
            raise _err("VisionConfig", "image_std", self.image_std, "must be > 0")
        object.__setattr__(self, "image_mean", tuple(float(x) for x in self.image_mean))
        object.__setattr__(self, "image_std", tuple(float(x) for x in self.image_std))


@dataclass(frozen=True)
class ProjectorConfig:
    """Connector from vision features to LM embeddings (see `vla.model.projectors`)."""

    type: str = "mlp"
    shuffle_factor: int = 2  # pixel_shuffle: merge factor x factor neighbouring patches into one token
    num_queries: int = 16  # resampler: number of learned query tokens per camera
    num_heads: int = 4  # resampler: cross-attention heads

    def __post_init__(self) -> None:
        if self.type not in PROJECTOR_TYPES:
            raise _err("ProjectorConfig", "type", self.type, f"must be one of {PROJECTOR_TYPES}")
        if self.shuffle_factor < 1:
            raise _err("ProjectorConfig", "shuffle_factor", self.shuffle_factor, "must be >= 1")
        if self.num_queries < 1:
            raise _err("ProjectorConfig", "num_queries", self.num_queries, "must be >= 1")
        if self.num_heads < 1:
            raise _err("ProjectorConfig", "num_heads", self.num_heads, "must be >= 1")


@dataclass(frozen=True)
class LMConfig:
    """Causal LM backbone: Llama by default, any `AutoModelForCausalLM` type or a local pretrained dir."""

    model_type: str = "llama"
    pretrained: str | None = None
    hf_config: dict[str, Any] = field(default_factory=dict)
    attn_implementation: str = "sdpa"  # sdpa | eager (both take our boolean 4-D masks)

    def __post_init__(self) -> None:
        if self.attn_implementation not in ("sdpa", "eager"):
            raise _err("LMConfig", "attn_implementation", self.attn_implementation, "must be sdpa or eager")


@dataclass(frozen=True)
class TextConfig:
    """Text tokenizer: `embedded` = a small byte-level BPE trained with `tokenizers` and saved with the
    checkpoint; `pretrained` = `AutoTokenizer` from `path` (default: the LM's pretrained dir)."""

    kind: str = "embedded"
    vocab_size: int = 512  # embedded only: BPE vocabulary (>= 256 byte symbols + specials)
    path: str | None = None
    prompt_len: int = 32  # prompts are left-padded / must fit into this many tokens

    def __post_init__(self) -> None:
        if self.kind not in ("embedded", "pretrained"):
            raise _err("TextConfig", "kind", self.kind, "must be 'embedded' or 'pretrained'")
        if self.kind == "embedded" and self.vocab_size < 264:
            raise _err("TextConfig", "vocab_size", self.vocab_size, "byte-level BPE needs >= 264 (256 bytes + specials)")
        if self.prompt_len < 4:
            raise _err("TextConfig", "prompt_len", self.prompt_len, "must be >= 4 tokens")


@dataclass(frozen=True)
class ActionConfig:
    """Action tokens and decoding: chunks of `horizon` steps of `dim`-D actions."""

    tokenizer: str = "bins"  # bins (OpenVLA) | fast (DCT + BPE, autoregressive only)
    n_bins: int = 256
    fast_tokens: int = 512  # fast: BPE vocabulary reserved at the end of the LM vocabulary
    fast_scale: float = 10.0
    fast_max_tokens: int = 64  # fast: decoding budget per chunk (the sequence ends at EOS)
    horizon: int = 1  # H: steps per predicted chunk
    dim: int = 7
    decoding: str = "autoregressive"  # autoregressive (KV cache) | parallel (one forward, OFT-style)
    parallel_attention: str = "bidirectional"  # parallel: action slots see each other | causal
    norm_mode: str = "bounds_q99"  # vla.normalization mode for actions (gripper left unnormalized)
    # actions of each chunk executed before re-planning, the default of `vla eval` and `vla control`
    # (None: all H, open loop); the checkpoint carries the value its policy was evaluated with
    execute_steps: int | None = None

    def __post_init__(self) -> None:
        if self.tokenizer not in ("bins", "fast"):
            raise _err("ActionConfig", "tokenizer", self.tokenizer, "must be 'bins' or 'fast'")
        if self.decoding not in DECODING_MODES:
            raise _err("ActionConfig", "decoding", self.decoding, f"must be one of {DECODING_MODES}")
        if self.tokenizer == "fast" and self.decoding == "parallel":
            raise _err("ActionConfig", "decoding", self.decoding, "FAST emits variable-length sequences; use autoregressive")
        if self.parallel_attention not in ("bidirectional", "causal"):
            raise _err("ActionConfig", "parallel_attention", self.parallel_attention, "must be bidirectional or causal")
        for name in ("n_bins", "horizon", "dim", "fast_tokens", "fast_max_tokens"):
            if getattr(self, name) < 1:
                raise _err("ActionConfig", name, getattr(self, name), "must be >= 1")
        if self.n_bins < 2:
            raise _err("ActionConfig", "n_bins", self.n_bins, "must be >= 2")
        if self.norm_mode not in ("bounds_q99", "mean_std", "min_max"):
            raise _err("ActionConfig", "norm_mode", self.norm_mode, "must be bounds_q99, mean_std or min_max")
        if self.execute_steps is not None and not 1 <= self.execute_steps <= self.horizon:
            raise _err("ActionConfig", "execute_steps", self.execute_steps, f"must be in [1, horizon={self.horizon}] or null")

    @property
    def steps_per_plan(self) -> int:
        """Actions executed per predicted chunk: `execute_steps`, or the whole chunk when unset."""
        return self.horizon if self.execute_steps is None else self.execute_steps

    @property
    def num_action_tokens(self) -> int:
        """Action slots in the sequence: H * D for bins, the decoding budget (incl. EOS) for FAST."""
        return self.horizon * self.dim if self.tokenizer == "bins" else self.fast_max_tokens + 1

    @property
    def num_reserved_ids(self) -> int:
        return self.n_bins if self.tokenizer == "bins" else self.fast_tokens


@dataclass(frozen=True)
class VLAConfig:
    """The whole policy. `cameras` name the observation keys (sim: agentview, wrist)."""

    name: str = "vla"
    vision: VisionConfig = field(default_factory=VisionConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    text: TextConfig = field(default_factory=TextConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    cameras: tuple[str, ...] = ("agentview", "wrist")
    use_state: bool = True  # one proprio token: Linear(normalized state) placed after the prompt
    state_dim: int = 8
    prompt_template: str = OPENVLA_PROMPT
    # learned embedding added to each visual token (per camera and grid cell): conv towers have no position
    # signal of their own, and RoPE only tells the LM how far a token is, so without it the action slots can
    # find "the red cube" by content but not read off where it is
    visual_pos_embed: bool = False
    # auxiliary head (training only): regress the privileged task state recorded with the demos
    # (`observation.environment_state`: the instructed cube and the goal, sim.TASK_STATE_NAMES) from the action
    # slots' final hidden states. It gives the colour word a direct, dense grounding signal; 0 = no head
    aux_state_dim: int = 0
    # what the auxiliary head reads: "actions" (mean of the action slots' final hidden states) or "visual" (a
    # soft pointer over the image tokens as the LM receives them: softmax(Linear(token)) weights, then the
    # head). "visual" supervises the grounding where it happens: with `film` the image tokens must mark the
    # cube the instruction names, which the action slots can then find with a fixed query
    aux_source: str = "actions"
    # attention inside the prefix [images][prompt][state]: "causal" (OpenVLA) or "bidirectional" (prefix-LM,
    # PaliGemma / pi0): image tokens then see the instruction and can mark the object it names
    prefix_attention: str = "causal"
    # FiLM (RT-1): scale and shift every vision-feature channel by a function of the instruction (the prompt's
    # token embeddings, attention-pooled from an idf prior: vla.model.film), before the projector. The image
    # tokens then already say "this is the cube the instruction names", which a small LM trained from scratch
    # otherwise has to learn to look up through two attention hops. Zero-initialised: starts as if it were off
    film: bool = False
    # with aux_source "visual": also give the LM the pointer's pick as one more prefix token (the soft-pointer
    # average of the image tokens, after the state): the action slots read "where the named object is" from
    # one place, and the pointer the auxiliary loss trains is then part of the policy, not training-only
    pointer_token: bool = False

    def __post_init__(self) -> None:
        if not self.cameras:
            raise _err("VLAConfig", "cameras", self.cameras, "need at least one camera")
        if len(set(self.cameras)) != len(self.cameras):
            raise _err("VLAConfig", "cameras", self.cameras, "camera names must be unique")
        object.__setattr__(self, "cameras", tuple(self.cameras))
        if "{instruction}" not in self.prompt_template:
            raise _err("VLAConfig", "prompt_template", self.prompt_template, "must contain '{instruction}'")
        if self.state_dim < 1:
            raise _err("VLAConfig", "state_dim", self.state_dim, "must be >= 1")
        if self.prefix_attention not in ("causal", "bidirectional"):
            raise _err("VLAConfig", "prefix_attention", self.prefix_attention, "must be causal or bidirectional")
        if self.aux_source not in ("actions", "visual"):
            raise _err("VLAConfig", "aux_source", self.aux_source, "must be actions or visual")
        if self.aux_state_dim < 0:
            raise _err("VLAConfig", "aux_state_dim", self.aux_state_dim, "must be >= 0 (0 = no auxiliary head)")
        if self.pointer_token and (self.aux_source != "visual" or self.aux_state_dim < 1):
            raise _err("VLAConfig", "pointer_token", self.pointer_token,
                       "needs the visual pointer it reads: aux_source: visual and aux_state_dim >= 1")

    # ---- (de)serialization ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cameras"] = list(self.cameras)
        d["vision"]["image_mean"] = list(self.vision.image_mean)
        d["vision"]["image_std"] = list(self.vision.image_std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VLAConfig:
        subs = {"vision": VisionConfig, "projector": ProjectorConfig, "lm": LMConfig, "text": TextConfig,
                "action": ActionConfig}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"VLAConfig: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k in subs:
                sub_known = {f.name for f in dataclasses.fields(subs[k])}
                bad = set(v or {}) - sub_known
                if bad:
                    raise ValueError(f"VLAConfig.{k}: unknown keys {sorted(bad)} (known: {sorted(sub_known)})")
                kw[k] = subs[k](**(v or {}))
            else:
                kw[k] = tuple(v) if k == "cameras" else v
        return cls(**kw)

    @classmethod
    def from_yaml(cls, path: str | Path) -> VLAConfig:
        import yaml

        with open(path) as f:
            d = yaml.safe_load(f)
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(d).__name__}")
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> VLAConfig:
        return dataclasses.replace(self, **changes)

    # ---- dummy input ----------------------------------------------------------------------

    def example_batch(self, batch_size: int = 2, text_vocab: int = 256, seed: int = 0) -> dict[str, Any]:
        """Random tensors with the shapes `VLAPolicy.forward` takes (tests, ONNX tracing, TRT profiles).

        Prompts get a different amount of left padding per row so masks are exercised.
        """
        import torch

        g = torch.Generator().manual_seed(seed)
        b, c, s, t = batch_size, len(self.cameras), self.vision.image_size, self.text.prompt_len
        pixel_values = torch.rand(b, c, 3, s, s, generator=g) * 2 - 1  # [B, C, 3, S, S] normalized
        prompt_ids = torch.randint(4, text_vocab, (b, t), generator=g)  # [B, T]
        prompt_mask = torch.ones(b, t, dtype=torch.bool)  # [B, T]
        for i in range(b):
            prompt_mask[i, : min(i, t - 1)] = False  # row i has i pad tokens on the left
        state = torch.rand(b, self.state_dim, generator=g) * 2 - 1  # [B, S_dim] normalized
        return {"pixel_values": pixel_values, "prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "state": state}


def debug_config(projector: str = "mlp", decoding: str = "autoregressive", horizon: int = 2,
                tokenizer: str = "bins", use_state: bool = True, parallel_attention: str = "bidirectional",
                coord_channels: bool = False, **changes: Any) -> VLAConfig:
    """A tiny CPU config for unit tests (hidden 32, 1 layer, 32x32 images): builds in about a second."""
    return VLAConfig(
        name="test",
        vision=VisionConfig(image_size=32, coord_channels=coord_channels, hf_config={"hidden_size": 32, "intermediate_size": 64,
                                                      "num_hidden_layers": 1, "num_attention_heads": 2,
                                                      "patch_size": 8}),
        projector=ProjectorConfig(type=projector, shuffle_factor=2, num_queries=4, num_heads=2),
        lm=LMConfig(hf_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                               "num_attention_heads": 2, "num_key_value_heads": 1,
                               "max_position_embeddings": 256}),
        text=TextConfig(vocab_size=300, prompt_len=48),
        action=ActionConfig(tokenizer=tokenizer, horizon=horizon, decoding=decoding, fast_tokens=128,
                            fast_max_tokens=24, parallel_attention=parallel_attention),
        use_state=use_state,
        **changes,
    )
