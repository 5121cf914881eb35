"""Synthetic checkpoints in OpenVLA's on-disk format (random weights, timm / Prismatic tensor names), for
tests of the converter's mechanics and for its memory benchmark (`scripts/bench_convert_memory.py`) at
multi-GB sizes: every tensor is generated and written one at a time, so making a 7B-shaped file needs
no more memory than converting it.

    make_synthetic_openvla("/tmp/ovla", fused=True, llm_hidden=32, llm_layers=2)      # a few MB
    make_synthetic_openvla("/tmp/big", llm_hidden=4096, llm_layers=6, max_shard_bytes=1 << 30)   # ~3 GB

This is not the exactness fixture: `tests/fixtures/openvla` holds checkpoints written and run by the
reference code itself (`scripts/make_openvla_fixture.py`). The tokenizer here is a Llama-2-shaped
`tokenizer.json` (BPE with byte fallback, 32000 ids, id 29871 = "▁") made with the `tokenizers` library.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from vla.convert.safetensors_stream import ShardedWriter
from vla.io import atomic_directory

_DINO, _SIGLIP = "vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"


def llama_like_tokenizer(directory: Path, words: tuple[str, ...] = ()) -> None:
    """tokenizer.json / tokenizer_config.json / special_tokens_map.json shaped like Llama-2's (ids: <unk> 0,
    <s> 1, </s> 2, bytes 3..258, merges of common letters and words, filler up to 32000, <PAD> 32000)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

    toks: list[str] = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    seen = set(toks)
    merges: list[tuple[str, str]] = []

    def add(tok: str) -> None:
        if tok not in seen and tok != "▁":
            seen.add(tok)
            toks.append(tok)

    for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:?.,\n":
        add(c)
    base = ("▁the", "▁robot", "▁what", "▁action", "▁should", "▁take", "▁to", "▁pick", "▁up", "▁put", "▁move",
            "▁cube", "▁block", "▁red", "▁on", "▁In", "▁Out", "▁What", *words)
    for w in base:
        for i in range(2, len(w) + 1):
            left, right = w[: i - 1], w[i - 1]
            add(left)
            add(right)
            merges.append((left, right))
            add(w[:i])
    toks += [f"<filler_{i}>" for i in range(len(toks), 29871)]
    toks.append("▁")  # id 29871, as in Llama-2
    toks += [f"<filler_{i}>" for i in range(len(toks), 32000)]
    vocab = {t: i for i, t in enumerate(toks)}
    if len(vocab) != 32000 or vocab["▁"] != 29871:
        raise RuntimeError("synthetic tokenizer ids are not 0..31999")
    merges = [m for m in merges if m[0] in vocab and m[1] in vocab and m[0] + m[1] in vocab]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken("<unk>", special=True), AddedToken("<s>", special=True),
                            AddedToken("</s>", special=True), AddedToken("<PAD>", special=True)])
    path = directory / "tokenizer.json"
    tok.save(str(path))
    # merges as "a b" strings, the format every tokenizers release reads (0.20+ writes pairs, which the 0.19
    # that OpenVLA's reference stack pins cannot read)
    raw = json.loads(path.read_text())
    raw["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in raw["model"]["merges"]]
    path.write_text(json.dumps(raw, ensure_ascii=False))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<PAD>", "legacy": False, "padding_side": "right", "tokenizer_class": "LlamaTokenizer",
        "model_max_length": 2048}, indent=2))
    (directory / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<PAD>"}, indent=2))


def _norm_stats(keys: tuple[str, ...], seed: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k in keys:
        scale = torch.rand(7, generator=g, dtype=torch.float64) * 0.05 + 0.005
        q01, q99 = (-scale).tolist(), scale.tolist()
        q01[6], q99[6] = 0.0, 1.0
        out[k] = {"action": {"mean": [0.0] * 6 + [0.5], "std": (scale / 2).tolist()[:6] + [0.49],
                             "max": [2 * x for x in q99], "min": [2 * x for x in q01], "q01": q01, "q99": q99,
                             "mask": [True] * 6 + [False]},
                  "proprio": {k2: [0.0] * 7 for k2 in ("mean", "std", "max", "min", "q01", "q99")},
                  "num_transitions": 1000, "num_trajectories": 10}
    return out


def _tower_tensors(prefix: str, kind: str, width: int, depth: int, mlp: int, image: int) -> list[tuple[str, tuple]]:
    p, d = prefix, width
    n = (image // 14) ** 2
    out: list[tuple[str, tuple]] = []
    if kind == "dinov2":
        out += [(p + "cls_token", (1, 1, d)), (p + "reg_token", (1, 4, d))]
    out += [(p + "pos_embed", (1, n, d)), (p + "patch_embed.proj.weight", (d, 3, 14, 14)),
            (p + "patch_embed.proj.bias", (d,))]
    for i in range(depth):
        b = f"{p}blocks.{i}."
        out += [(b + "norm1.weight", (d,)), (b + "norm1.bias", (d,)), (b + "attn.qkv.weight", (3 * d, d)),
                (b + "attn.qkv.bias", (3 * d,)), (b + "attn.proj.weight", (d, d)), (b + "attn.proj.bias", (d,)),
                (b + "norm2.weight", (d,)), (b + "norm2.bias", (d,)), (b + "mlp.fc1.weight", (mlp, d)),
                (b + "mlp.fc1.bias", (mlp,)), (b + "mlp.fc2.weight", (d, mlp)), (b + "mlp.fc2.bias", (d,))]
        if kind == "dinov2":
            out += [(b + "ls1.scale_factor", (d,)), (b + "ls2.scale_factor", (d,))]
    out += [(p + "norm.weight", (d,)), (p + "norm.bias", (d,))]
    if kind == "siglip":  # the attention-pool head OpenVLA never reads
        a = p + "attn_pool."
        out += [(a + "latent", (1, 1, d)), (a + "q.weight", (d, d)), (a + "q.bias", (d,)), (a + "kv.weight", (2 * d, d)),
                (a + "kv.bias", (2 * d,)), (a + "proj.weight", (d, d)), (a + "proj.bias", (d,)),
                (a + "norm.weight", (d,)), (a + "norm.bias", (d,)), (a + "mlp.fc1.weight", (mlp, d)),
                (a + "mlp.fc1.bias", (mlp,)), (a + "mlp.fc2.weight", (d, mlp)), (a + "mlp.fc2.bias", (d,))]
    return out


def make_synthetic_openvla(out: str | Path, fused: bool = True, tower_width: int = 64, tower_depth: int = 3,
                           dino_mlp: int = 256, siglip_mlp: int = 200, llm_hidden: int = 32, llm_layers: int = 2,
                           llm_heads: int = 4, llm_intermediate: int = 64, resize: str = "resize-naive",
                           unnorm_keys: tuple[str, ...] = ("bridge_orig", "fractal20220817_data"),
                           dtype: torch.dtype = torch.bfloat16, max_shard_bytes: int = 4 << 30, seed: int = 0) -> Path:
    """Write an OpenVLA-format checkpoint directory with random weights (see the module docstring)."""
    out = Path(out)
    vocab = 32064
    towers = [("vision_backbone.featurizer.", "dinov2", dino_mlp)] if fused else []
    towers.append(("vision_backbone.fused_featurizer." if fused else "vision_backbone.featurizer.", "siglip", siglip_mlp))
    tensors: list[tuple[str, tuple]] = []
    for prefix, kind, mlp in towers:
        tensors += _tower_tensors(prefix, kind, tower_width, tower_depth, mlp, 224)
    vdim = tower_width * len(towers)
    if fused:
        tensors += [("projector.fc1.weight", (4 * vdim, vdim)), ("projector.fc1.bias", (4 * vdim,)),
                    ("projector.fc2.weight", (llm_hidden, 4 * vdim)), ("projector.fc2.bias", (llm_hidden,)),
                    ("projector.fc3.weight", (llm_hidden, llm_hidden)), ("projector.fc3.bias", (llm_hidden,))]
    else:
        tensors += [("projector.fc1.weight", (llm_hidden, vdim)), ("projector.fc1.bias", (llm_hidden,)),
                    ("projector.fc2.weight", (llm_hidden, llm_hidden)), ("projector.fc2.bias", (llm_hidden,))]
    h, m, kv = llm_hidden, llm_intermediate, llm_hidden  # no GQA (Llama-2-7B)
    lm = "language_model.model."
    tensors.append((lm + "embed_tokens.weight", (vocab, h)))
    for i in range(llm_layers):
        b = f"{lm}layers.{i}."
        tensors += [(b + "self_attn.q_proj.weight", (h, h)), (b + "self_attn.k_proj.weight", (kv, h)),
                    (b + "self_attn.v_proj.weight", (kv, h)), (b + "self_attn.o_proj.weight", (h, h)),
                    (b + "mlp.gate_proj.weight", (m, h)), (b + "mlp.up_proj.weight", (m, h)),
                    (b + "mlp.down_proj.weight", (h, m)), (b + "input_layernorm.weight", (h,)),
                    (b + "post_attention_layernorm.weight", (h,))]
    tensors += [(lm + "norm.weight", (h,)), ("language_model.lm_head.weight", (vocab, h))]

    g = torch.Generator().manual_seed(seed)
    bid = "dinosiglip-vit-so-224px" if fused else "siglip-vit-so400m"
    with atomic_directory(out) as tmp:
        with ShardedWriter(tmp, max_shard_bytes) as w:
            for name, shape in tensors:
                w.plan(name, dtype, shape)
            w.open()
            for name, shape in tensors:
                if name.endswith(("norm1.weight", "norm2.weight", "norm.weight", "layernorm.weight")):
                    t = 1 + 0.1 * torch.randn(shape, generator=g)
                elif name.endswith(("scale_factor",)):
                    t = 0.5 + 0.1 * torch.randn(shape, generator=g)
                else:
                    fan = shape[-1] if len(shape) > 1 else 1
                    t = torch.randn(shape, generator=g) * (0.5 / max(fan, 1) ** 0.5 if len(shape) > 1 else 0.1)
                w.write(name, t.to(dtype))
                del t
            w.close()
        text_config = {"model_type": "llama", "vocab_size": vocab, "hidden_size": h, "intermediate_size": m,
                       "num_hidden_layers": llm_layers, "num_attention_heads": llm_heads,
                       "num_key_value_heads": llm_heads, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
                       "pad_token_id": 32000, "torch_dtype": "bfloat16", "rope_theta": 10000.0}
        cfg = {"model_type": "openvla", "architectures": ["OpenVLAForActionPrediction"],
               "auto_map": {"AutoConfig": "configuration_prismatic.OpenVLAConfig",
                            "AutoModelForVision2Seq": "modeling_prismatic.OpenVLAForActionPrediction"},
               "vision_backbone_id": bid, "llm_backbone_id": "llama2-7b-pure",
               "arch_specifier": "no-align+fused-gelu-mlp" if fused else "no-align+gelu-mlp",
               "use_fused_vision_backbone": fused,
               "timm_model_ids": [_DINO, _SIGLIP] if fused else [_SIGLIP], "timm_override_act_layers": [None] * len(towers),
               "image_sizes": [224] * len(towers), "image_resize_strategy": resize, "hf_llm_id": "meta-llama/Llama-2-7b-hf",
               "llm_max_length": 2048, "pad_token_id": 32000, "pad_to_multiple_of": 64, "n_action_bins": 256,
               "norm_stats": _norm_stats(unnorm_keys, seed), "text_config": text_config, "torch_dtype": "bfloat16"}
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
        means = [[0.485, 0.456, 0.406], [0.5, 0.5, 0.5]] if fused else [[0.5, 0.5, 0.5]]
        stds = [[0.229, 0.224, 0.225], [0.5, 0.5, 0.5]] if fused else [[0.5, 0.5, 0.5]]
        (tmp / "preprocessor_config.json").write_text(json.dumps({
            "image_processor_type": "PrismaticImageProcessor", "use_fused_vision_backbone": fused,
            "image_resize_strategy": resize, "input_sizes": [[3, 224, 224]] * len(towers),
            "interpolations": ["bicubic"] * len(towers), "means": means, "stds": stds}, indent=2))
        llama_like_tokenizer(tmp)
    return out
