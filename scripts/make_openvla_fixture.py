"""Make the OpenVLA exactness fixtures (`tests/fixtures/openvla/`) with the reference code itself.

Two small random-weight checkpoints in exactly the on-disk format `openvla/openvla-7b` ships on Hugging
Face, written by the reference classes' own `save_pretrained`, then loaded back by the reference code
(fp32, CPU) and run through `predict_action` exactly as OpenVLA's README does. The recorded inputs and
outputs let vla's independent implementation (`vla.convert.openvla`) be tested for exact agreement.

    tiny-dinosiglip/         dinosiglip-vit-so-224px, fused towers, resize-naive, no-align+fused-gelu-mlp,
                             2 datasets in norm_stats, bf16 weights in 2 safetensors shards + index
    tiny-siglip-letterbox/   siglip-vit-so400m, one tower, letterbox, gelu-mlp, 1 dataset, one model.safetensors
    images/                  the uint8 PNG inputs (shared by both fixtures)
    <fixture>/reference/     cases.json, pixel_values.npz, logits.npz, versions.json

This script never runs inside vla's environment: it needs the reference stack (torch, transformers 4.40.1,
timm 0.9.10, tokenizers 0.19.1) in its own virtualenv and the reference code (never copied into this repo).

Rerun (from the repository root):

    python3 -m venv /work/refenv_openvla
    /work/refenv_openvla/bin/pip install torch==2.13.0 transformers==4.40.1 timm==0.9.10 tokenizers==0.19.1 \
        "numpy<2" pillow safetensors sentencepiece        # never an unpinned torch (it pulls the CUDA build)
    # the reference code: github.com/openvla/openvla, prismatic/extern/hf/*.py (recorded: commit c8f03f48)
    git clone https://github.com/openvla/openvla /tmp/openvla_src      # or any git dir of it
    mkdir -p /tmp/openvla_ref && for f in configuration_prismatic modeling_prismatic processing_prismatic; do
        git -C /tmp/openvla_src show HEAD:prismatic/extern/hf/$f.py > /tmp/openvla_ref/$f.py; done
    /work/refenv_openvla/bin/python scripts/make_openvla_fixture.py --reference-code /tmp/openvla_ref \
        [--reference-commit SHA] [--out tests/fixtures/openvla] [--seed 0]

The output is deterministic (seeded init, CPU fp32 reference run) and written into a temporary directory
next to `--out`, which replaces `--out` only when everything succeeded.

Workaround for the pinned stack (the only one needed): pip resolves timm's `torchvision` to the PyPI
`torchvision==0.28.0` wheel, which is built against the CUDA torch 2.13.0 (its `_C.so` links libtorch_cuda /
libc10_cuda) and so cannot load its C extension next to `torch==2.13.0+cpu`; torchvision 0.28's
`_meta_registrations.py` then fails on import (`RuntimeError: operator torchvision::nms does not exist`).
`_torchvision_shim()` below, when (and only when) that `_C.so` cannot be loaded, defines the schemas of the
two ops it registers fake kernels for unconditionally (`torchvision::nms`, `torchvision::qnms`) before
torchvision is imported. Nothing OpenVLA uses touches torchvision's C ops (the processor uses PIL-based
`torchvision.transforms.functional`; timm only imports `FrozenBatchNorm2d`). No other change was needed:
transformers 4.40.1 and timm 0.9.10 run unmodified on torch 2.13.0.

Small towers. The reference builds each tower with `timm.create_model(timm_id, pretrained=False,
num_classes=0, img_size=224, act_layer=None)`; the config carries only the timm ids, so the tower size is
not in config.json (a converter must read it from the weight shapes). This script wraps `timm.create_model`
(also while reloading for the reference run) to add exactly these keyword overrides; everything else is
what the timm id implies (patch 14, img 224 as passed, 16 heads, qkv bias, LayerNorm eps 1e-6, GELU (erf);
DINOv2: class token + 4 register tokens, `no_embed_class=True` (pos_embed covers patches only),
LayerScale with init_values 1e-5 (then re-drawn, below); SigLIP: no class token, `global_pool='map'`
(attention-pool head present in the weights, unused), mlp_ratio 3.7362):
    vit_large_patch14_reg4_dinov2.lvd142m: depth=3, embed_dim=64        (mlp hidden int(64*4)      = 256)
    vit_so400m_patch14_siglip_224:         depth=3, embed_dim=48        (mlp hidden int(48*3.7362) = 179)

Weights: after the reference `post_init`, every parameter is re-drawn (sorted names, one seeded
torch.Generator per fixture; seeds 9 and 11 were picked by a search so that ids vary with image and
instruction): towers: Linear/Conv weights N(0, (1.3/sqrt(fan_in))^2), biases N(0, 0.05^2), LayerNorm
weights 1 + N(0, 0.1^2), cls/reg tokens, pos_embed, attn_pool latent N(0, 0.5^2), LayerScale
`scale_factor` U(0.3, 1.0); projector: weights N(0, 1/fan_in), biases N(0, 0.05^2); Llama: embed_tokens
N(0, 1), RMSNorm weights 1 + N(0, 0.1^2), q/k/v/o/gate/up/down N(0, (1.5/sqrt(fan_in))^2), lm_head
N(0, 1/hidden) with the rows outside the action block [31744, 32000) scaled by 0.02 (so greedy decoding
over the whole vocabulary lands in the action block). Then the model is cast to bfloat16 (as the real
checkpoint) and saved; the reference run loads it back in fp32, so every weight is bf16-exact.

Tokenizer: synthetic Llama-2-style `tokenizer.json` (the real one is not on this machine): see
`build_tokenizer`. `tokenizer.model` (sentencepiece) is NOT written (the real repo has one).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# --- fixture constants -------------------------------------------------------------------------------------------
DINO_ID, SIGLIP_ID = "vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"
TOWER_OVERRIDES = {DINO_ID: {"depth": 3, "embed_dim": 64}, SIGLIP_ID: {"depth": 3, "embed_dim": 48}}

PROMPT = "In: What action should the robot take to {instruction}?\nOut:"
INSTRUCTIONS = ["Pick up the RED block", "put the spoon on the towel", "move the cube left",
                "Stack 2 cups, then wipe"]
# (file, width, height)
IMAGES = [("scene_224x224.png", 224, 224), ("scene_256x256.png", 256, 256), ("scene_320x200.png", 320, 200),
          ("scene_240x321.png", 240, 321)]

ACTION_BLOCK = (31744, 32000)  # ids the reference maps onto bins (32000 - id - 1 in 0..254, clipped)


def _stats(mean, std, mx, mn, q01, q99, n_tr, n_traj, proprio=None):
    p = proprio or {k: [0.0] * 7 for k in ("mean", "std", "max", "min", "q01", "q99")}
    return {"action": {"mean": mean, "std": std, "max": mx, "min": mn, "q01": q01, "q99": q99,
                       "mask": [True] * 6 + [False]},
            "proprio": p, "num_transitions": n_tr, "num_trajectories": n_traj}


NORM_STATS = {
    "bridge_orig": _stats(
        mean=[0.0002334194869035855, 0.00013004911306779832, -0.00012762474943883717, -0.0001556558854645118,
              -0.0004039328487124294, 0.00023557482927571982, 0.5764579176902771],
        std=[0.009765930473804474, 0.013689135201275349, 0.012667362578213215, 0.028534092009067535,
             0.030637972056865692, 0.07691419124603271, 0.4973701536655426],
        mx=[0.41691166162490845, 0.25864794850349426, 0.21218234300613403, 3.122201919555664, 1.8618112802505493,
            6.280478477478027, 1.0],
        mn=[-0.4007510244846344, -0.13874775171279907, -0.22553899884223938, -3.2010786533355713,
            -1.8618112802505493, -6.279075622558594, 0.0],
        q01=[-0.02872725307941437, -0.04170349963009357, -0.026093858778476715, -0.08092105075716972,
             -0.09288699507713317, -0.20718276381492615, 0.0],
        q99=[0.028309678435325586, 0.040855254605412394, 0.040161586627364146, 0.08192047759890528,
             0.07792850524187081, 0.20382574498653397, 1.0],
        n_tr=2135463, n_traj=60064),
    "fractal20220817_data": _stats(
        mean=[0.006987582892179489, 0.006265917327255011, -0.01262515690177679, 0.04333311319351196,
              -0.005756212864071131, 0.0009130256366916001, 0.5354204773902893],
        std=[0.0692116990685463, 0.05970962345600128, 0.07353084534406662, 0.15610496699810028,
             0.13164450228214264, 0.14593800902366638, 0.497110515832901],
        mx=[2.9984593391418457, 22.09052848815918, 2.7507524490356445, 1.570636510848999, 1.5321086645126343,
            1.5691522359848022, 1.0],
        mn=[-2.0204520225524902, -5.497899532318115, -2.031663417816162, -1.569917917251587, -1.569892168045044,
            -1.570419430732727, 0.0],
        q01=[-0.22453527510166169, -0.14820013284683228, -0.231589707583189, -0.3517994859814644,
             -0.4193011274933815, -0.43643461108207704, 0.0],
        q99=[0.17824687153100965, 0.14938379630446405, 0.21842354819178575, 0.5892666035890578,
             0.35272657424211445, 0.44796681255102094, 1.0],
        n_tr=3786400, n_traj=87212,
        proprio={"mean": [0.5598, -0.0312, 0.8843, 0.0112, -0.0201, 0.7421, 0.4512],
                 "std": [0.1241, 0.1107, 0.0701, 0.3210, 0.2402, 0.4011, 0.4874],
                 "max": [1.0421, 0.4851, 1.3012, 3.1414, 1.5702, 3.1415, 1.0],
                 "min": [0.1012, -0.5511, 0.4123, -3.1413, -1.5701, -3.1415, 0.0],
                 "q01": [0.2501, -0.3402, 0.6801, -3.0102, -0.8812, -2.9911, 0.0],
                 "q99": [0.8702, 0.2803, 1.0804, 3.0205, 0.7806, 3.0107, 1.0]}),
}
NORM_STATS_LIBERO = {
    "libero_spatial_no_noops": _stats(
        mean=[0.15312479436397552, 0.13707277178764343, -0.15526802837848663, -0.005176450591534376,
              -0.01120874285697937, -0.020194264128804207, 0.4578818082809448],
        std=[0.41272708773612976, 0.34724321961402893, 0.50869220495224, 0.037266165018081665,
             0.07244449853897095, 0.05762382969260216, 0.49827873706817627],
        mx=[0.9375, 0.9375, 0.9375, 0.1971428543329239, 0.33642858266830444, 0.375, 1.0],
        mn=[-0.9375, -0.9375, -0.9375, -0.1875, -0.3675000071525574, -0.36000001430511475, 0.0],
        q01=[-0.7454732114076613, -0.6616071462631226, -0.9375, -0.1071428582072258, -0.20678570866584778,
             -0.1842857152223587, 0.0],
        q99=[0.9375, 0.8758928775787354, 0.9321428537368774, 0.1039285734295845, 0.17678570747375488,
             0.14571428298950195, 1.0],
        n_tr=52970, n_traj=432),
}

FIXTURES = [
    {"name": "tiny-dinosiglip", "vision_backbone_id": "dinosiglip-vit-so-224px", "use_fused_vision_backbone": True,
     "image_resize_strategy": "resize-naive", "arch_specifier": "no-align+fused-gelu-mlp",
     # as openvla-7b: text_config fields at LlamaConfig defaults are left out (so rms_norm_eps = 1e-6, the
     # transformers default, exactly what the real checkpoint runs with: its text_config has no rms_norm_eps)
     "text_config": {"vocab_size": 32064, "hidden_size": 32, "intermediate_size": 86, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 2048,
                     "pad_token_id": 32000},
     "norm_stats": NORM_STATS, "shards": 2, "logit_cases": 2, "seed": 9},
    {"name": "tiny-siglip-letterbox", "vision_backbone_id": "siglip-vit-so400m", "use_fused_vision_backbone": False,
     "image_resize_strategy": "letterbox", "arch_specifier": "gelu-mlp",
     # explicit Llama-2 values here (rms_norm_eps 1e-5 is Llama-2's own), so both paths are covered
     "text_config": {"vocab_size": 32064, "hidden_size": 16, "intermediate_size": 44, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 2048,
                     "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "pad_token_id": 32000},
     "norm_stats": NORM_STATS_LIBERO, "shards": 1, "logit_cases": 2, "seed": 11},
]


# --- environment -------------------------------------------------------------------------------------------------
def _torchvision_shim() -> bool:
    """See the module docstring. Returns True when the shim was applied."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    so = Path(list(spec.submodule_search_locations)[0]) / "_C.so"
    try:
        torch.ops.load_library(str(so))
        return False
    except (OSError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _torchvision_shim.lib = lib  # keep the Library alive
    return True


def import_reference(code_dir: Path):
    """Import the three reference files as package `openvla_ref` (they use relative imports)."""
    pkg = types.ModuleType("openvla_ref")
    pkg.__path__ = [str(code_dir)]
    sys.modules["openvla_ref"] = pkg
    cfg = importlib.import_module("openvla_ref.configuration_prismatic")
    mdl = importlib.import_module("openvla_ref.modeling_prismatic")
    prc = importlib.import_module("openvla_ref.processing_prismatic")
    return cfg, mdl, prc


def patch_timm_create_model():
    import timm

    original = timm.create_model

    def create_model(model_name, *args, **kwargs):
        kwargs = {**kwargs, **TOWER_OVERRIDES.get(model_name, {})}
        return original(model_name, *args, **kwargs)

    timm.create_model = create_model  # the reference calls `timm.create_model` through the module attribute


# --- tokenizer ---------------------------------------------------------------------------------------------------
WORDS = ["▁In", "▁What", "▁action", "▁should", "▁the", "▁robot", "▁take", "▁to", "▁pick", "▁up", "▁red",
         "▁block", "▁put", "▁spoon", "▁on", "▁towel", "▁move", "▁cube", "▁left", "▁stack", "▁cups", "▁then",
         "▁wipe", "Out", "In", "▁a", "▁of", "▁and", "▁drawer", "▁open", "▁close"]
BIGRAMS = ["▁t", "he", "in", "er", "on", "re", "an", "ck", "ow", "el", "oo", "ub", "ft", "ch", "st", "up"]


def build_tokenizer(out: Path):
    """Llama-2-shaped tokenizer.json: normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, BPE with
    byte_fallback and fuse_unk, unk <unk>; decoder Replace("▁"," ") / ByteFallback / Fuse / Strip(" ", 1, 0);
    ids <unk> 0, <s> 1, </s> 2, <0x00>..<0xFF> 3..258, then letters a-z A-Z and : ? . , ' -, then the BPE
    chains of WORDS and BIGRAMS (merges in that order), filler tokens "<fNNNNN>" up to 31999 except 29871 = "▁"
    (as Llama-2); digits, newline and other characters fall back to byte tokens (as Llama-2 does for "\n").
    Then LlamaTokenizerFast + add_special_tokens(pad_token="<PAD>") -> id 32000, as Prismatic does."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    seen, merges = set(toks) | {"▁"}, []

    def add(t):
        if t not in seen:
            seen.add(t)
            toks.append(t)

    for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:?.,'-":
        add(c)
    for w in WORDS + BIGRAMS:
        for i in range(2, len(w) + 1):
            pair = (w[: i - 1], w[i - 1])
            if pair not in merges:
                merges.append(pair)
            add(w[:i])
    if len(toks) >= 29871:
        raise RuntimeError("too many pieces")
    toks += [f"<f{i}>" for i in range(len(toks), 29871)]
    toks.append("▁")
    toks += [f"<f{i}>" for i in range(len(toks), 32000)]
    vocab = {t: i for i, t in enumerate(toks)}
    assert len(vocab) == 32000 and vocab["▁"] == 29871 and vocab["<0x0A>"] == 13
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                      special_tokens=[("<s>", 1)])
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    out.mkdir(parents=True, exist_ok=True)
    tk.save(str(out / "tokenizer.json"))

    from transformers import LlamaTokenizerFast

    tok = LlamaTokenizerFast(tokenizer_file=str(out / "tokenizer.json"), bos_token="<s>", eos_token="</s>",
                             unk_token="<unk>", add_bos_token=True, add_eos_token=False, legacy=False,
                             padding_side="right", model_max_length=2048, clean_up_tokenization_spaces=False,
                             use_default_system_prompt=False)
    tok.add_special_tokens({"pad_token": "<PAD>"})
    assert tok.pad_token_id == 32000 and len(tok) == 32001
    return tok


# --- images ------------------------------------------------------------------------------------------------------
def make_images(out: Path):
    """Flat-shaded, noise-free 'sim renders': table, wall, a few objects; differ in layout and colours."""
    from PIL import Image, ImageDraw

    out.mkdir(parents=True, exist_ok=True)
    layouts = [
        [((200, 40, 40), "rect", (0.20, 0.55, 0.38, 0.75)), ((40, 90, 200), "ellipse", (0.55, 0.50, 0.80, 0.70)),
         ((230, 200, 60), "rect", (0.60, 0.78, 0.92, 0.95))],
        [((40, 160, 60), "rect", (0.10, 0.60, 0.30, 0.90)), ((220, 220, 220), "rect", (0.45, 0.62, 0.95, 0.85)),
         ((180, 60, 180), "ellipse", (0.35, 0.35, 0.55, 0.55))],
        [((30, 30, 30), "rect", (0.05, 0.45, 0.25, 0.70)), ((240, 120, 20), "ellipse", (0.40, 0.60, 0.60, 0.95)),
         ((90, 200, 220), "rect", (0.70, 0.50, 0.95, 0.65)), ((200, 40, 40), "rect", (0.30, 0.20, 0.40, 0.35))],
        [((120, 80, 40), "rect", (0.15, 0.30, 0.85, 0.45)), ((40, 90, 200), "rect", (0.40, 0.65, 0.60, 0.80)),
         ((250, 250, 250), "ellipse", (0.10, 0.80, 0.40, 0.97))],
    ]
    bgs = [((170, 170, 185), (140, 110, 80)), ((200, 190, 170), (100, 100, 110)), ((90, 110, 140), (160, 150, 130)),
           ((230, 230, 230), (60, 70, 60))]
    for (name, w, h), objs, (wall, table) in zip(IMAGES, layouts, bgs, strict=True):
        im = Image.new("RGB", (w, h), wall)
        d = ImageDraw.Draw(im)
        d.rectangle([0, int(0.42 * h), w, h], fill=table)
        d.line([0, int(0.42 * h), w, int(0.42 * h)], fill=(20, 20, 20), width=2)
        for col, kind, (x0, y0, x1, y1) in objs:
            box = [int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h)]
            (d.rectangle if kind == "rect" else d.ellipse)(box, fill=col, outline=(0, 0, 0))
        im.save(out / name, optimize=True)


# --- weights -----------------------------------------------------------------------------------------------------
def init_weights(model, seed: int):
    """Re-draw every parameter (see the module docstring). Order: sorted parameter names."""
    import torch

    g = torch.Generator().manual_seed(seed)
    lo, hi = ACTION_BLOCK

    def normal(shape, std):
        return torch.randn(shape, generator=g, dtype=torch.float32) * std

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            shape = tuple(p.shape)
            leaf = name.rsplit(".", 1)[-1]
            if name.startswith("vision_backbone."):
                if "scale_factor" in name:
                    v = torch.rand(shape, generator=g) * 0.7 + 0.3
                elif leaf in ("cls_token", "reg_token", "pos_embed", "latent"):
                    v = normal(shape, 0.5)
                elif ("norm" in name.split(".")[-2]) and leaf == "weight":
                    v = 1.0 + normal(shape, 0.1)
                elif leaf == "bias":
                    v = normal(shape, 0.05)
                else:  # Linear / Conv weight
                    fan_in = int(torch.tensor(shape[1:]).prod())
                    v = normal(shape, 1.3 / fan_in ** 0.5)
            elif name.startswith("projector."):
                v = normal(shape, 0.05) if leaf == "bias" else normal(shape, 1.0 / shape[1] ** 0.5)
            else:  # language_model.*
                if "embed_tokens" in name:
                    v = normal(shape, 1.0)
                elif "norm" in name:
                    v = 1.0 + normal(shape, 0.1)
                elif "lm_head" in name:
                    v = normal(shape, 1.0 / shape[1] ** 0.5)
                    keep = torch.zeros(shape[0], dtype=torch.bool)
                    keep[lo:hi] = True
                    v[~keep] *= 0.02
                else:
                    v = normal(shape, 1.5 / shape[1] ** 0.5)
            p.copy_(v.to(p.dtype))


def shard_size(state_dict, n: int) -> str:
    """The smallest max_shard_size (in KB) for which save_pretrained writes exactly `n` files."""
    from transformers.modeling_utils import shard_checkpoint

    if n == 1:
        return "10GB"
    total = sum(t.numel() * t.element_size() for t in state_dict.values())
    for kb in range(total // n // 1000, total // 1000 + 2, 10):
        if len(shard_checkpoint(state_dict, f"{kb}KB")[0]) == n:
            return f"{kb}KB"
    raise RuntimeError(f"no shard size gives {n} shards")


# --- one fixture -------------------------------------------------------------------------------------------------
def make_fixture(spec, ref, tmp_root: Path, images_dir: Path, seed: int, commit: str, shim: bool):
    import numpy as np
    import torch
    from PIL import Image

    cfg_mod, mdl_mod, prc_mod = ref
    out = tmp_root / spec["name"]
    out.mkdir(parents=True)

    # config + model (reference classes), random weights
    config = cfg_mod.OpenVLAConfig(
        norm_stats=spec["norm_stats"], n_action_bins=256, vision_backbone_id=spec["vision_backbone_id"],
        llm_backbone_id="llama2-7b-pure", arch_specifier=spec["arch_specifier"],
        use_fused_vision_backbone=spec["use_fused_vision_backbone"],
        image_resize_strategy=spec["image_resize_strategy"], text_config=spec["text_config"], llm_max_length=2048,
        pad_token_id=32000, pad_to_multiple_of=64, output_projector_states=False)
    torch.manual_seed(seed)
    model = mdl_mod.OpenVLAForActionPrediction(config)
    init_weights(model, seed)
    model = model.to(torch.bfloat16)
    # as the real repo: auto_map via register_for_auto_class (its copied .py files are deleted below)
    cfg_mod.OpenVLAConfig.register_for_auto_class()
    mdl_mod.OpenVLAForActionPrediction.register_for_auto_class("AutoModelForVision2Seq")
    shard = shard_size(model.state_dict(), spec["shards"])
    model.save_pretrained(out, max_shard_size=shard, safe_serialization=True)

    # processor: image processor from the towers' timm data config, as Prismatic does
    import timm.data

    means, stds, sizes, interps = [], [], [], []
    towers = [model.vision_backbone.featurizer]
    if spec["use_fused_vision_backbone"]:
        towers.append(model.vision_backbone.fused_featurizer)
    for tower, size in zip(towers, config.image_sizes, strict=True):
        dc = timm.data.resolve_model_data_config(tower)
        means.append(tuple(dc["mean"]))
        stds.append(tuple(dc["std"]))
        interps.append(dc["interpolation"])
        sizes.append((3, size, size))
    ip = prc_mod.PrismaticImageProcessor(use_fused_vision_backbone=spec["use_fused_vision_backbone"],
                                         image_resize_strategy=spec["image_resize_strategy"], input_sizes=sizes,
                                         interpolations=interps, means=means, stds=stds)
    tok = build_tokenizer(tmp_root / f".tok-{spec['name']}")
    prc_mod.PrismaticImageProcessor.register_for_auto_class("AutoImageProcessor")
    prc_mod.PrismaticProcessor.register_for_auto_class("AutoProcessor")
    processor = prc_mod.PrismaticProcessor(ip, tok)
    processor.save_pretrained(out)
    shutil.rmtree(tmp_root / f".tok-{spec['name']}")
    for f in out.glob("*.py"):  # the reference code, copied by register_for_auto_class: never shipped here
        f.unlink()
    (out / "processor_config.json").unlink()  # written by 4.40.1's ProcessorMixin (auto_map only); openvla-7b has none
    # what the real repo has beside save_pretrained's output: added_tokens.json, dataset_statistics.json
    (out / "added_tokens.json").write_text(json.dumps({"<PAD>": 32000}, indent=2) + "\n")
    (out / "dataset_statistics.json").write_text(json.dumps(spec["norm_stats"], indent=2) + "\n")
    # compact tokenizer.json (same content, no indentation) to keep the fixture small
    from tokenizers import Tokenizer

    Tokenizer.from_file(str(out / "tokenizer.json")).save(str(out / "tokenizer.json"), pretty=False)
    del model

    # ---- reference run: load back exactly as a user would (fp32, CPU) ----
    model = mdl_mod.OpenVLAForActionPrediction.from_pretrained(out, torch_dtype=torch.float32).eval()
    # = AutoProcessor.from_pretrained(out, trust_remote_code=True), without executing files from `out`
    from transformers import AutoTokenizer

    auto_tok = AutoTokenizer.from_pretrained(out)
    processor = prc_mod.PrismaticProcessor(prc_mod.PrismaticImageProcessor.from_pretrained(out), auto_tok)
    assert type(auto_tok).__name__ == "LlamaTokenizerFast", type(auto_tok)
    assert type(processor.tokenizer).__name__ == "LlamaTokenizerFast"

    captured = {}
    original_generate = model.generate

    def generate(*a, **k):
        res = original_generate(*a, **k)
        captured["ids"], captured["args"], captured["kwargs"] = res, a, k
        return res

    model.generate = generate
    keys = list(spec["norm_stats"])
    pix, logits_npz, cases = {}, {}, []
    with torch.inference_mode():
        for img_name, _, _ in IMAGES:
            image = Image.open(images_dir / img_name)
            image.load()
            for instruction in INSTRUCTIONS:
                prompt = PROMPT.format(instruction=instruction.lower())
                inputs = processor(prompt, image)
                pv = inputs["pixel_values"]
                arr = pv[0].numpy().astype(np.float32)
                if img_name in pix:
                    assert np.array_equal(pix[img_name], arr)
                pix[img_name] = arr
                for key in keys:
                    captured.clear()
                    action = model.predict_action(**inputs, unnorm_key=key, do_sample=False)
                    seq = captured["ids"]
                    gen_ids = seq[0, -7:].tolist()
                    # same call again, with per-step logits (must give the same ids)
                    res = original_generate(*captured["args"], **captured["kwargs"], output_logits=True,
                                            return_dict_in_generate=True)
                    assert res.sequences.tolist() == seq.tolist()
                    steps = []
                    for lg in res.logits:
                        top = torch.topk(lg[0].float(), 5)
                        steps.append({"top5_ids": top.indices.tolist(),
                                      "top5_logits": [float(x) for x in top.values.tolist()],
                                      "margin": float(top.values[0] - top.values[1])})
                    case_id = f"{Path(img_name).stem}|{instruction}|{key}"
                    first_logits = res.logits[0][0].float().numpy().astype(np.float32)
                    cases.append({"id": case_id, "image": f"../../images/{img_name}", "image_file": img_name,
                                  "instruction": instruction, "prompt": prompt, "unnorm_key": key,
                                  "input_ids": inputs["input_ids"][0].tolist(),
                                  "attention_mask": inputs["attention_mask"][0].tolist(),
                                  "generate_input_ids": captured["args"][0][0].tolist(),
                                  "generated_ids": gen_ids, "sequence": seq[0].tolist(),
                                  "action": [float(x) for x in np.asarray(action, dtype=np.float64).tolist()],
                                  "steps": steps, "_first_logits": first_logits})
    # first-step logits for a few cases (spread over images and instructions)
    pick = [cases[i * (len(cases) // spec["logit_cases"]) + i % len(keys)] for i in range(spec["logit_cases"])]
    for i, c in enumerate(pick):
        logits_npz[f"case{i}"] = c["_first_logits"]
        c["first_step_logits"] = f"logits.npz:case{i}"
    # check: the generate() first-step logits equal a plain forward with a full attention mask
    c0 = pick[0]
    with torch.inference_mode():
        ids = torch.tensor([c0["generate_input_ids"]])
        image = Image.open(images_dir / c0["image_file"])
        pv = processor(c0["prompt"], image)["pixel_values"]
        fwd = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pv).logits[0, -1].numpy()
    fwd_max_abs_diff = float(np.abs(fwd - c0["_first_logits"]).max())
    for c in cases:
        del c["_first_logits"]

    ref_dir = out / "reference"
    ref_dir.mkdir()
    np.savez_compressed(ref_dir / "pixel_values.npz", **{Path(k).stem: v for k, v in pix.items()})
    np.savez_compressed(ref_dir / "logits.npz", **logits_npz)
    distinct = sorted({tuple(c["generated_ids"]) for c in cases})
    in_block = all(ACTION_BLOCK[0] < i < ACTION_BLOCK[1] for c in cases for i in c["generated_ids"])
    def by(f):
        return {k: len({tuple(c["generated_ids"]) for c in cases if f(c) == k}) for k in sorted({f(c) for c in cases})}

    summary = {
        "cases": len(cases), "distinct_generated_id_sequences": len(distinct),
        "distinct_actions": len({tuple(c["action"]) for c in cases}),
        "all_ids_in_action_block_31745_31999": in_block,
        "distinct_first_ids": len({c["generated_ids"][0] for c in cases}),
        "distinct_sequences_per_instruction_over_images": by(lambda c: c["instruction"] + "|" + c["unnorm_key"]),
        "distinct_sequences_per_image_over_instructions": by(lambda c: c["image_file"] + "|" + c["unnorm_key"]),
        "min_top1_top2_margin": min(s["margin"] for c in cases for s in c["steps"]),
        "first_step_logits_generate_vs_full_mask_forward_max_abs_diff": fwd_max_abs_diff,
    }
    meta = {
        "fixture": spec["name"], "reference": "OpenVLAForActionPrediction.from_pretrained(dir, "
        "torch_dtype=torch.float32) + PrismaticProcessor.from_pretrained(dir); "
        "inputs = processor(prompt, image); model.predict_action(**inputs, unnorm_key=key, do_sample=False)",
        "prompt_template": PROMPT, "instruction_transform": "lower()",
        "attn_implementation": model.config._attn_implementation,
        "llm_attn_implementation": model.language_model.config._attn_implementation,
        "tower_overrides": {k: v for k, v in TOWER_OVERRIDES.items() if k in config.timm_model_ids},
        "notes": {
            "input_ids": "processor output (BOS + prompt); predict_action appends 29871 when the last id is not "
                         "29871 -> generate_input_ids; attention_mask is NOT extended",
            "generated_ids": "the last 7 ids of generate(); action = where(mask, 0.5*(bin_centers[clip(32000 - id "
                             "- 1, 0, 254)] + 1)*(q99 - q01) + q01, bin_centers[...])",
            "steps": "per generated token: top-5 ids/logits (fp32) and top1-top2 margin",
            "pixel_values.npz": "key = image file stem; float32 [C, 224, 224] (C = 6 fused: DINOv2 then SigLIP)",
            "logits.npz": "first generation step, full 32064-way logits, float32",
        },
        "summary": summary, "cases": cases,
    }
    (ref_dir / "cases.json").write_text(json.dumps(meta, indent=1) + "\n")
    (ref_dir / "versions.json").write_text(json.dumps({**versions(commit, shim), "seed": seed}, indent=2) + "\n")
    return summary


def versions(commit: str, shim: bool):
    import numpy
    import PIL
    import safetensors
    import timm
    import tokenizers
    import torch
    import torchvision
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "timm": timm.__version__,
            "tokenizers": tokenizers.__version__, "numpy": numpy.__version__, "pillow": PIL.__version__,
            "safetensors": safetensors.__version__, "torchvision": torchvision.__version__,
            "python": sys.version.split()[0], "torchvision_ops_shim": shim,
            "reference_code": "github.com/openvla/openvla prismatic/extern/hf/{configuration,modeling,processing}"
                              "_prismatic.py", "reference_commit": commit}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference-code", required=True, type=Path,
                    help="directory holding configuration_prismatic.py, modeling_prismatic.py, processing_prismatic.py")
    ap.add_argument("--reference-commit", default=None, help="commit of those files (default: read from "
                    "$OPENVLA_REF_COMMIT or a REFERENCE_COMMIT file in --reference-code)")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "openvla")
    ap.add_argument("--seed", type=int, default=0, help="offset added to each fixture's seed (chosen for "
                    "sensitivity: varied action ids, all inside the action block)")
    args = ap.parse_args()

    code = args.reference_code.resolve()
    if code.is_relative_to(REPO):
        sys.exit("keep the reference code outside this repository")
    commit = args.reference_commit or os.environ.get("OPENVLA_REF_COMMIT")
    if commit is None and (code / "REFERENCE_COMMIT").is_file():
        commit = (code / "REFERENCE_COMMIT").read_text().strip()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    shim = _torchvision_shim()
    import numpy as np
    import torch

    torch.set_num_threads(min(8, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True)
    np.random.seed(args.seed)
    patch_timm_create_model()
    ref = import_reference(code)

    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".openvla-fixture-", dir=out.parent))
    try:
        images = tmp / "images"
        make_images(images)
        summaries = {}
        for spec in FIXTURES:
            summaries[spec["name"]] = make_fixture(spec, ref, tmp, images, args.seed + spec["seed"], commit, shim)
        (tmp / "README.md").write_text(
            "OpenVLA exactness fixtures, written and run by the reference code "
            "(scripts/make_openvla_fixture.py; see its docstring). Do not edit by hand.\n")
        old = out.with_name(out.name + ".old")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(json.dumps(summaries, indent=1))


if __name__ == "__main__":
    main()
