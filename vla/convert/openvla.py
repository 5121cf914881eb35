"""OpenVLA (Prismatic) Hugging Face checkpoints -> native vla checkpoints, streamed tensor by tensor (torch).

    info = inspect_openvla("/models/openvla-7b")                  # config checks only, no weights read
    convert_openvla("/models/openvla-7b", "runs/openvla-bridge", unnorm_key="bridge_orig", dtype="bf16")
    vla convert openvla --checkpoint /models/openvla-7b --out runs/openvla-bridge --unnorm-key bridge_orig

The source is what `openvla/openvla-7b` ships: `config.json` (`model_type: openvla`), the weights (one
`model.safetensors` or shards + index), the tokenizer files and `preprocessor_config.json`. Its Python
files (`auto_map`) are never executed and nothing is downloaded. The result is a `VLAPolicy` checkpoint
(`vla.config`) that every workflow takes: the same sequence `[BOS][visual][prompt][29871][7 action
tokens]`, the same towers, projector and Llama, the same preprocessing and unnormalization:

| OpenVLA (reference code)                          | vla                                                    |
|---------------------------------------------------|--------------------------------------------------------|
| timm DINOv2-reg4 ViT, `get_intermediate_layers(n={depth - 2})` | `dinov2_with_registers` (transformers), the blocks up to the read one, `post_norm=False`, CLS + registers dropped |
| timm SigLIP ViT (`fused_featurizer`), same layer  | `siglip_vision_model`, same; features concatenated per patch (`VisionConfig.fused`) |
| LayerScale `ls1.scale_factor` (patched `gamma`)   | `layer_scale1.lambda1`                                   |
| fused qkv Linear                                  | q / k / v projections (rows split in order)              |
| timm `pos_embed` (no class position)              | `position_embeddings` with a zero row for the CLS token (cls + 0 = cls) |
| `projector.fc1..fc3` (GELU between)               | `fused_gelu_mlp` (fused towers) or `mlp` (one tower)     |
| `language_model.*` (LlamaForCausalLM, 32064 rows) | `lm.*`                                                   |
| processor: resize-naive / letterbox / resize-crop, PIL bicubic, per-tower mean/std | `VisionConfig.resize` bicubic / letterbox / resize_crop, `PolicyIO.pixels` |
| `vocab_size - pad_to_multiple_of - ids`, `bin_centers`, q01/q99 with mask | `ActionConfig.block_end`, bins tokenizer, norm mode `openvla` |
| greedy `generate()` over the whole vocabulary     | `restrict_logits=False` (the action-only mask: `--restrict-logits`) |

Tower depth, width and MLP size come from the weight shapes; heads and patch size from the backbone id;
so a small checkpoint in the same format loads like the 7B one. The last block of each tower, its final
norm's use and SigLIP's attention-pool head are never read by OpenVLA, so they are not stored.

One deliberate difference: the reference clips a generated id outside the action block into the end bin
(a full-range action); vla marks that chunk invalid (never executed). Real checkpoints emit action ids.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla.config import ActionConfig, LMConfig, ProjectorConfig, TextConfig, VisionConfig, VLAConfig
from vla.convert.safetensors_stream import ShardedWriter, TensorInfo, read_header, read_tensor, shard_files
from vla.io import atomic_directory
from vla.meta import write_meta
from vla.normalization import Normalizer, NormStats, save_norm_stats

OPENVLA_PROMPT_LLAMA = "In: What action should the robot take to {instruction}?\nOut:"
# OpenVLA v0.1 (Vicuna): the LLaVA system prompt
VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
                 "detailed, and polite answers to the user's questions.")
OPENVLA_PROMPT_VICUNA = VICUNA_SYSTEM + " USER: What action should the robot take to {instruction}? ASSISTANT:"
EMPTY_TOKEN = 29871  # Llama-2's "▁": OpenVLA's predict_action appends it after "Out:"

# timm ids Prismatic uses that vla maps onto transformers towers: (kind, heads, patch size)
TIMM_TOWERS = {
    "vit_large_patch14_reg4_dinov2.lvd142m": ("dinov2", 16, 14),
    "vit_so400m_patch14_siglip_224": ("siglip", 16, 14),
    "vit_so400m_patch14_siglip_384": ("siglip", 16, 14),
}
# Prismatic vision backbone ids -> (timm ids, image sizes), for the ones above
BACKBONES = {
    "dinov2-vit-l": (["vit_large_patch14_reg4_dinov2.lvd142m"], [224]),
    "siglip-vit-so400m": (["vit_so400m_patch14_siglip_224"], [224]),
    "siglip-vit-so400m-384px": (["vit_so400m_patch14_siglip_384"], [384]),
    "dinosiglip-vit-so-224px": (["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"], [224, 224]),
    "dinosiglip-vit-so-384px": (["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_384"], [384, 384]),
}
ARCH_SPECIFIERS = {"gelu-mlp": False, "no-align+gelu-mlp": False, "fused-gelu-mlp": True, "no-align+fused-gelu-mlp": True}
LLM_BACKBONES = {"llama2-7b-pure": "llama", "llama2-13b-pure": "llama", "llama2-7b-chat": "llama",
                 "llama2-13b-chat": "llama", "vicuna-v15-7b": "llama", "vicuna-v15-13b": "llama"}
RESIZE = {"resize-naive": "bicubic", "letterbox": "letterbox", "resize-crop": "resize_crop"}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model")


def _fail(src: Path, what: str) -> ValueError:
    return ValueError(f"{src}: {what}")


@dataclass(frozen=True)
class Tower:
    prefix: str  # source key prefix, e.g. "vision_backbone.featurizer."
    kind: str  # dinov2 | siglip
    heads: int
    patch: int
    image_size: int
    width: int
    depth: int  # blocks in the source; OpenVLA reads block depth - 2 (0-based)
    mlp: int
    registers: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def vision_config(self, resize: str, fill: tuple[int, int, int] | None, fused: VisionConfig | None) -> VisionConfig:
        kept = self.depth - 1  # blocks 0 .. depth-2
        if self.kind == "dinov2":
            ratio = self.mlp // self.width  # transformers' DINOv2 config takes an integer mlp_ratio
            hf = {"hidden_size": self.width, "num_hidden_layers": kept, "num_attention_heads": self.heads,
                  "mlp_ratio": ratio, "patch_size": self.patch, "num_register_tokens": self.registers,
                  "layerscale_value": 1.0, "layer_norm_eps": 1e-6, "hidden_act": "gelu", "qkv_bias": True,
                  "use_swiglu_ffn": False, "drop_path_rate": 0.0}
            model_type, drop = "dinov2_with_registers", True
        else:
            hf = {"hidden_size": self.width, "intermediate_size": self.mlp, "num_hidden_layers": kept,
                  "num_attention_heads": self.heads, "patch_size": self.patch, "layer_norm_eps": 1e-6,
                  "hidden_act": "gelu", "vision_use_head": False}
            model_type, drop = "siglip_vision_model", False
        return VisionConfig(model_type=model_type, hf_config=hf, image_size=self.image_size, image_mean=self.mean,
                            image_std=self.std, drop_cls=drop, coord_channels=False, post_norm=False, resize=resize,
                            letterbox_fill=fill, fused=fused)


@dataclass(frozen=True)
class OpenVLAInfo:
    src: Path
    config: dict[str, Any]
    towers: tuple[Tower, ...]
    fused_projector: bool
    unnorm_key: str
    action_stats: dict[str, Any]
    vocab_size: int  # the LM's rows (32064)
    block_end: int  # vocab_size - pad_to_multiple_of (32000)
    files: tuple[Path, ...]
    headers: dict[str, tuple[Path, TensorInfo]]  # source tensor -> (file, info)

    @property
    def n_bins(self) -> int:
        return int(self.config.get("n_action_bins", 256))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the OpenVLA checkpoint")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _choose_key(src: Path, norm_stats: Any, unnorm_key: str | None) -> str:
    if not isinstance(norm_stats, dict) or not norm_stats:
        raise _fail(src / "config.json", "has no norm_stats (the action statistics OpenVLA unnormalizes with)")
    keys = sorted(norm_stats)
    if unnorm_key is None:
        if len(keys) > 1:
            raise ValueError(f"{src}: the checkpoint holds the action statistics of {len(keys)} datasets; choose one "
                             f"with --unnorm-key: {', '.join(keys)}")
        return keys[0]
    if unnorm_key not in norm_stats:
        raise ValueError(f"{src}: --unnorm-key {unnorm_key!r} is not in the checkpoint; available: {', '.join(keys)}")
    return unnorm_key


def _blocks(names: list[str], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"blocks\.(\d+)\.")
    ids = {int(m.group(1)) for n in names if (m := pat.match(n))}
    if not ids or ids != set(range(max(ids) + 1)):
        raise ValueError(f"tower {prefix!r}: blocks missing or not numbered 0..N-1 ({sorted(ids)[:5]}...)")
    return max(ids) + 1


def inspect_openvla(src: str | Path, unnorm_key: str | None = None) -> OpenVLAInfo:
    """Validate an OpenVLA checkpoint directory and read its layout (configs and safetensors headers only)."""
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such checkpoint directory")
    cfg = _read_json(src / "config.json")
    if cfg.get("model_type") != "openvla":
        raise _fail(src / "config.json", f"model_type {cfg.get('model_type')!r}; expected 'openvla' (an OpenVLA "
                    "checkpoint in its Hugging Face format)")
    bid = cfg.get("vision_backbone_id")
    if bid not in BACKBONES:
        raise _fail(src / "config.json", f"vision_backbone_id {bid!r} is not supported; supported: {sorted(BACKBONES)}")
    timm_ids, sizes = BACKBONES[bid]
    if list(cfg.get("timm_model_ids", timm_ids)) != timm_ids or list(cfg.get("image_sizes", sizes)) != sizes:
        raise _fail(src / "config.json", f"timm_model_ids / image_sizes do not match backbone {bid!r} "
                    f"(expected {timm_ids} at {sizes})")
    fused = bool(cfg.get("use_fused_vision_backbone", len(timm_ids) == 2))
    if fused != (len(timm_ids) == 2):
        raise _fail(src / "config.json", f"use_fused_vision_backbone={fused} contradicts backbone {bid!r}")
    arch = cfg.get("arch_specifier")
    if arch not in ARCH_SPECIFIERS:
        raise _fail(src / "config.json", f"arch_specifier {arch!r} is not supported; supported: {sorted(ARCH_SPECIFIERS)}")
    if ARCH_SPECIFIERS[arch] != fused:  # the reference builds the projector from the fused flag
        raise _fail(src / "config.json", f"arch_specifier {arch!r} does not fit a {'fused' if fused else 'single'} tower")
    llm = cfg.get("llm_backbone_id")
    if llm not in LLM_BACKBONES:
        raise _fail(src / "config.json", f"llm_backbone_id {llm!r} is not supported; supported: {sorted(LLM_BACKBONES)}")
    text = cfg.get("text_config") or {}
    if text.get("model_type", "llama") != LLM_BACKBONES[llm]:
        raise _fail(src / "config.json", f"text_config.model_type {text.get('model_type')!r}, expected 'llama'")
    if any(cfg.get("timm_override_act_layers") or []):
        raise _fail(src / "config.json", f"timm_override_act_layers {cfg['timm_override_act_layers']} are not supported")
    strategy = cfg.get("image_resize_strategy")
    if strategy not in RESIZE:
        raise _fail(src / "config.json", f"image_resize_strategy {strategy!r}; supported: {sorted(RESIZE)}")
    key = _choose_key(src, cfg.get("norm_stats"), unnorm_key)
    stats = (cfg["norm_stats"][key] or {}).get("action")
    need = ("mean", "std", "max", "min", "q01", "q99")
    if not isinstance(stats, dict) or any(k not in stats for k in need):
        raise _fail(src / "config.json", f"norm_stats[{key!r}].action needs {list(need)}")
    if len(stats["q01"]) != 7:
        raise _fail(src / "config.json", f"norm_stats[{key!r}] has {len(stats['q01'])}-D actions; vla runs 7-D")

    pre = _read_json(src / "preprocessor_config.json")
    means, stds = pre.get("means"), pre.get("stds")
    if not means or not stds or len(means) != len(timm_ids) or len(stds) != len(timm_ids):
        raise _fail(src / "preprocessor_config.json", f"needs means / stds for {len(timm_ids)} tower(s)")
    interp = pre.get("interpolations") or ["bicubic"] * len(timm_ids)
    if any(i != "bicubic" for i in interp):
        raise _fail(src / "preprocessor_config.json", f"interpolations {interp}; only bicubic is supported")
    if pre.get("image_resize_strategy", strategy) != strategy:
        raise _fail(src / "preprocessor_config.json", "image_resize_strategy differs from config.json's")
    for f in ("tokenizer.json",):
        if not (src / f).is_file():
            raise FileNotFoundError(f"{src / f}: missing (vla reads the fast tokenizer's tokenizer.json)")

    files = shard_files(src)
    headers: dict[str, tuple[Path, TensorInfo]] = {}
    for f in files:
        h, _ = read_header(f)
        for k, v in h.items():
            headers[k] = (f, v)
    names = sorted(headers)
    towers = []
    for i, tid in enumerate(timm_ids):
        kind, heads, patch = TIMM_TOWERS[tid]
        prefix = "vision_backbone." + ("featurizer." if i == 0 else "fused_featurizer.")
        need_keys = [prefix + "patch_embed.proj.weight", prefix + "pos_embed", prefix + "blocks.0.mlp.fc1.weight"]
        missing = [k for k in need_keys if k not in headers]
        if missing:
            raise _fail(src, f"tower {i} ({tid}): weights {missing} missing")
        pw = headers[prefix + "patch_embed.proj.weight"][1].shape  # [D, 3, p, p]
        if tuple(pw[1:]) != (3, patch, patch):
            raise _fail(src, f"tower {i} ({tid}): patch embedding {pw}, expected patch size {patch}")
        width = int(pw[0])
        if width % heads:
            raise _fail(src, f"tower {i} ({tid}): width {width} is not divisible by its {heads} heads")
        depth = _blocks(names, prefix)
        if depth < 2:
            raise _fail(src, f"tower {i} ({tid}): {depth} block(s); OpenVLA reads the second-to-last")
        n_patch = (sizes[i] // patch) ** 2
        pos = headers[prefix + "pos_embed"][1].shape
        if tuple(pos) != (1, n_patch, width):
            raise _fail(src, f"tower {i} ({tid}): pos_embed {pos}, expected (1, {n_patch}, {width})")
        reg = 0
        if kind == "dinov2":
            if prefix + "reg_token" not in headers or prefix + "cls_token" not in headers:
                raise _fail(src, f"tower {i} ({tid}): cls_token / reg_token missing")
            reg = int(headers[prefix + "reg_token"][1].shape[1])
        mlp = int(headers[prefix + "blocks.0.mlp.fc1.weight"][1].shape[0])
        if kind == "dinov2" and mlp % width:
            raise _fail(src, f"tower {i} ({tid}): MLP width {mlp} is no multiple of {width} (transformers' DINOv2 "
                        "takes an integer mlp_ratio)")
        towers.append(Tower(prefix, kind, heads, patch, sizes[i], width, depth, mlp, reg,
                            tuple(float(x) for x in means[i]), tuple(float(x) for x in stds[i])))
    vocab = int(text.get("vocab_size", 32064))
    pad = int(cfg.get("pad_to_multiple_of", 64))
    return OpenVLAInfo(src, cfg, tuple(towers), fused, key, stats, vocab, vocab - pad, tuple(files), headers)


def build_config(info: OpenVLAInfo, camera: str = "agentview", prompt_len: int = 64,
                 restrict_logits: bool = False, prompt: str | None = None, lowercase: bool = True) -> VLAConfig:
    """The vla config of a converted checkpoint (see the module docstring)."""
    strategy = info.config["image_resize_strategy"]
    resize = RESIZE[strategy]
    # the reference processor takes the letterbox fill from the last tower's mean (its loop overwrites it)
    fill = tuple(int(x * 255) for x in info.towers[-1].mean) if resize == "letterbox" else None
    fused = info.towers[1].vision_config(resize, fill, None) if len(info.towers) == 2 else None
    vision = info.towers[0].vision_config(resize, fill, fused)
    text = dict(info.config.get("text_config") or {})
    for k in ("vocab_size", "model_type", "architectures", "_name_or_path", "torch_dtype", "dtype",
              "transformers_version", "auto_map"):
        text.pop(k, None)
    text["tie_word_embeddings"] = bool(text.get("tie_word_embeddings", False))
    llm = info.config["llm_backbone_id"]
    template = prompt or (OPENVLA_PROMPT_VICUNA if llm.startswith("vicuna") else OPENVLA_PROMPT_LLAMA)
    return VLAConfig(
        name=f"openvla:{info.src.name}:{info.unnorm_key}",
        vision=vision,
        projector=ProjectorConfig(type="fused_gelu_mlp" if info.fused_projector else "mlp"),
        lm=LMConfig(model_type="llama", hf_config=text, attn_implementation="sdpa"),
        text=TextConfig(kind="tokenizer_json", vocab_size=info.block_end, prompt_len=prompt_len, bos_id=1,
                        pad_id=int(info.config.get("pad_token_id", 32000)), lowercase=lowercase,
                        suffix_ids=(EMPTY_TOKEN,)),
        action=ActionConfig(tokenizer="bins", n_bins=info.n_bins, horizon=1, dim=7, decoding="autoregressive",
                            norm_mode="openvla", execute_steps=1, block_end=info.block_end,
                            restrict_logits=restrict_logits),
        cameras=(camera,),
        state_dim=None,
        prompt_template=template,
        visual_pos_embed=False,
        aux=None,
        film=None,
        bos_before_visual=True,
    )


# ---- weights ------------------------------------------------------------------------------------

Source = Callable[[], torch.Tensor]


def _zero_row(pos: torch.Tensor) -> torch.Tensor:
    """[1, P, D] -> [1, 1 + P, D] with zeros in front."""
    return torch.cat([torch.zeros_like(pos[:, :1]), pos], 1)


def _tower_map(t: Tower, dst: str, read: Callable[[str], torch.Tensor], names: Any) -> dict[str, Source]:
    """vla name -> a function producing the tensor from the timm-named source (blocks 0 .. depth-2)."""
    p = t.prefix
    w = t.width
    out: dict[str, Source] = {}

    def take(name: str) -> Source:
        return lambda: read(p + name)

    def split(name: str, part: int) -> Source:  # fused qkv rows [3D, ...] -> q | k | v
        return lambda: read(p + name)[part * w:(part + 1) * w]

    def gamma(block: int, which: str) -> Source:  # OpenVLA renames timm's LayerScale `gamma` to `scale_factor`
        name = f"{p}blocks.{block}.{which}."
        return lambda: read(name + ("scale_factor" if name + "scale_factor" in names else "gamma"))

    if t.kind == "dinov2":
        e = dst + "embeddings."
        out[e + "cls_token"] = take("cls_token")
        out[e + "register_tokens"] = take("reg_token")
        out[e + "mask_token"] = lambda: torch.zeros_like(read(p + "cls_token")[0])  # [1, D], never used
        # timm keeps no position for the CLS token (no_embed_class): a zero row adds nothing to it
        out[e + "position_embeddings"] = lambda: _zero_row(read(p + "pos_embed"))
        out[e + "patch_embeddings.projection.weight"] = take("patch_embed.proj.weight")
        out[e + "patch_embeddings.projection.bias"] = take("patch_embed.proj.bias")
        for i in range(t.depth - 1):
            b, s = f"{dst}encoder.layer.{i}.", f"blocks.{i}."
            for a, c in (("norm1", "norm1"), ("norm2", "norm2"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"),
                         ("attention.o_proj", "attn.proj")):
                out[b + a + ".weight"] = take(s + c + ".weight")
                out[b + a + ".bias"] = take(s + c + ".bias")
            for part, a in enumerate(("q_proj", "k_proj", "v_proj")):
                out[b + f"attention.{a}.weight"] = split(s + "attn.qkv.weight", part)
                out[b + f"attention.{a}.bias"] = split(s + "attn.qkv.bias", part)
            out[b + "layer_scale1.lambda1"] = gamma(i, "ls1")
            out[b + "layer_scale2.lambda1"] = gamma(i, "ls2")
        out[dst + "layernorm.weight"] = take("norm.weight")
        out[dst + "layernorm.bias"] = take("norm.bias")
    else:
        e = dst + "embeddings."
        out[e + "patch_embedding.weight"] = take("patch_embed.proj.weight")
        out[e + "patch_embedding.bias"] = take("patch_embed.proj.bias")
        out[e + "position_embedding.weight"] = lambda: read(p + "pos_embed")[0]
        for i in range(t.depth - 1):
            b, s = f"{dst}encoder.layers.{i}.", f"blocks.{i}."
            for a, c in (("layer_norm1", "norm1"), ("layer_norm2", "norm2"), ("mlp.fc1", "mlp.fc1"),
                         ("mlp.fc2", "mlp.fc2"), ("self_attn.out_proj", "attn.proj")):
                out[b + a + ".weight"] = take(s + c + ".weight")
                out[b + a + ".bias"] = take(s + c + ".bias")
            for part, a in enumerate(("q_proj", "k_proj", "v_proj")):
                out[b + f"self_attn.{a}.weight"] = split(s + "attn.qkv.weight", part)
                out[b + f"self_attn.{a}.bias"] = split(s + "attn.qkv.bias", part)
        out[dst + "post_layernorm.weight"] = take("norm.weight")
        out[dst + "post_layernorm.bias"] = take("norm.bias")
    return out


def weight_map(info: OpenVLAInfo, read: Callable[[str], torch.Tensor]) -> dict[str, Source]:
    """Every tensor of the converted policy -> how to produce it from the source checkpoint."""
    out = _tower_map(info.towers[0], "vision.model.", read, info.headers)
    if len(info.towers) == 2:
        out.update(_tower_map(info.towers[1], "vision.fused_tower.model.", read, info.headers))
    layers = (("fc1", "0"), ("fc2", "2"), ("fc3", "4")) if info.fused_projector else (("fc1", "0"), ("fc2", "2"))
    def take(name: str) -> Source:
        return lambda: read(name)

    for a, b in layers:
        for s in ("weight", "bias"):
            out[f"projector.net.{b}.{s}"] = take(f"projector.{a}.{s}")
    for k in info.headers:
        if k.startswith("language_model."):
            out["lm." + k[len("language_model."):]] = take(k)
    return out


def _expected_state(cfg: VLAConfig, text_vocab_size: int, vocab_size: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Names and shapes of the converted policy's tensors, from a module built on the meta device (no memory)."""
    from vla.model.policy import VLAPolicy, _parameters_on_meta
    from vla.text import TextTokenizer

    class _NoText(TextTokenizer):  # the module needs no tokenizer to be built
        def __init__(self) -> None:
            super().__init__("tokenizer_json", None, text_vocab_size, pad_id=0, bos_id=cfg.text.bos_id, eos_id=None)

    with _parameters_on_meta():
        policy = VLAPolicy(cfg, _NoText(), text_vocab_size, vocab_size=vocab_size)
    return {k: (tuple(v.shape), v.dtype) for k, v in policy.state_dict().items()}


def _action_normalizer(stats: dict[str, Any], count: int) -> Normalizer:
    arrs = {k: np.asarray(stats[k], dtype=np.float64) for k in ("min", "max", "mean", "std", "q01", "q99")}
    mask = np.asarray(stats.get("mask", [True] * len(stats["q01"])), dtype=bool)
    return Normalizer(NormStats(**arrs, count=int(count)), mode="openvla", mask=mask)


def _check_out(src: Path, out: Path) -> None:
    """The output directory replaces whatever is at `out`: refuse the source itself, a directory holding it,
    and any existing directory that is not a vla checkpoint (a converted one is replaced, atomically)."""
    s, o = src.resolve(), out.resolve()
    if o == s or o in s.parents:
        raise ValueError(f"--out {out}: is {'the source checkpoint' if o == s else 'a directory holding the source'}; "
                         "the output directory is replaced as a whole: choose a new one")
    if o.exists() and (not o.is_dir() or (any(o.iterdir()) and not (o / "convert.json").is_file())):
        raise ValueError(f"--out {out}: exists and is not a checkpoint `vla convert` wrote; it would be replaced "
                         "as a whole: choose a new directory (or remove it yourself)")


def convert_openvla(src: str | Path, out: str | Path, unnorm_key: str | None = None, camera: str = "agentview",
                    dtype: str = "bf16", prompt_len: int = 64, restrict_logits: bool = False,
                    lowercase: bool = True, max_shard_bytes: int = 4 << 30, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Convert `src` into the vla checkpoint `out` (written atomically); returns a summary (also saved as
    `convert.json` in it). Tensors are read, converted and written one at a time (`safetensors_stream`)."""
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r}: choose one of {sorted(DTYPES)}")
    _check_out(Path(src), Path(out))
    t0 = time.perf_counter()
    info = inspect_openvla(src, unnorm_key)
    cfg = build_config(info, camera=camera, prompt_len=prompt_len, restrict_logits=restrict_logits,
                       lowercase=lowercase)
    text_vocab = info.block_end
    expected = _expected_state(cfg, text_vocab, info.vocab_size)

    read_names: set[str] = set()

    def read(name: str) -> torch.Tensor:
        read_names.add(name)
        if name not in info.headers:
            raise _fail(info.src, f"tensor {name!r} missing from the weights")
        f, ti = info.headers[name]
        return read_tensor(f, ti)

    sources = weight_map(info, read)
    target = DTYPES[dtype]
    for k, (shape, _) in expected.items():
        if k not in sources:
            if k == "action_slots":  # parallel-decoding placeholders: unused by an autoregressive policy
                sources[k] = (lambda s: lambda: torch.zeros(s))(shape)
            else:
                raise _fail(info.src, f"nothing in the checkpoint maps onto vla's {k!r}")
    extra = sorted(set(sources) - set(expected))
    if extra:
        raise _fail(info.src, f"weights with no place in the converted model: {extra[:5]}")
    used = {k for k in info.headers if k.startswith("language_model.")}
    total_src = sum(ti.nbytes for _, ti in info.headers.values())
    out = Path(out)
    with atomic_directory(out) as tmp:
        with ShardedWriter(tmp, max_shard_bytes) as w:
            for k in expected:
                w.plan(k, target, expected[k][0])
            w.open()
            for i, k in enumerate(expected):
                t = sources[k]()
                if tuple(t.shape) != expected[k][0]:
                    raise _fail(info.src, f"{k}: converted tensor has shape {tuple(t.shape)}, the config builds "
                                f"{expected[k][0]}")
                w.write(k, t.to(target))
                del t
                if progress is not None:
                    progress(i + 1, len(expected))
            w.close()
        write_meta(tmp, cfg, text_vocab, info.vocab_size,
                   {"type": "bins", "vocab_size": info.block_end, "n_bins": info.n_bins, "low": -1.0, "high": 1.0})
        count = (info.config["norm_stats"][info.unnorm_key] or {}).get("num_transitions", 0) or 0
        save_norm_stats(tmp / "norm_stats.json", {"action": _action_normalizer(info.action_stats, count)})
        for f in TOKENIZER_FILES:
            if (info.src / f).is_file():
                shutil.copyfile(info.src / f, tmp / f)
        summary = {
            "source": str(info.src.resolve()), "unnorm_key": info.unnorm_key, "dtype": dtype,
            "vision_backbone_id": info.config["vision_backbone_id"], "llm_backbone_id": info.config["llm_backbone_id"],
            "towers": [{"kind": t.kind, "width": t.width, "depth": t.depth, "kept_blocks": t.depth - 1, "mlp": t.mlp}
                       for t in info.towers],
            "tensors": len(expected), "source_bytes": total_src,
            "skipped_source_tensors": sorted(set(info.headers) - read_names - used)[:50],
            "seconds": round(time.perf_counter() - t0, 3),
        }
        (tmp / "convert.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
