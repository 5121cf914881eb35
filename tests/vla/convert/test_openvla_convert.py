"""`vla convert openvla` on synthetic OpenVLA-format checkpoints (random weights, timm / Prismatic names):
refusals that name the problem, an exact weight mapping, sharded I/O, the sequence layout, decoding paths
that agree, bf16, the CLI and fine-tuning. Agreement with the reference implementation itself is
tests/vla/convert/test_openvla_reference.py (fixtures recorded by OpenVLA's own code)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vla.cli import main
from vla.convert.openvla import convert_openvla, inspect_openvla
from vla.convert.safetensors_stream import ShardedWriter, read_header, read_tensor, shard_files
from vla.convert.synthetic import make_synthetic_openvla
from vla.model.decoding import decode_autoregressive, generate_baseline, to_tensors
from vla.model.policy import VLAPolicy
from vla.model.runtime import TorchRuntime
from vla.policy_io import PolicyIO, letterbox

KEY = "bridge_orig"


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ovla") / "src"
    return make_synthetic_openvla(d, fused=True, max_shard_bytes=2 << 20)  # 3 source shards


@pytest.fixture(scope="module")
def converted(src, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ovla") / "fp32"
    convert_openvla(src, out, unnorm_key=KEY, dtype="fp32")
    return out


def _src_tensors(src: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in shard_files(src):
        out.update(load_file(str(f)))
    return out


def _obs(seed: int, instruction: str = "Pick up the RED block", shape=(200, 320, 3)) -> dict:
    return {"agentview": np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), "instruction": instruction}


def test_refusals_name_what_is_wrong(src, tmp_path):
    with pytest.raises(ValueError, match="bridge_orig, fractal20220817_data"):
        inspect_openvla(src)  # two datasets' statistics, no key
    with pytest.raises(ValueError, match="'nope' is not in the checkpoint; available: bridge_orig, fractal"):
        inspect_openvla(src, "nope")
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    cfg = json.loads((bad / "config.json").read_text())
    for field, value, msg in (("vision_backbone_id", "clip-vit-l", "supported: .*dinosiglip-vit-so-224px"),
                              ("arch_specifier", "no-align+gelu-mlp", "does not fit a fused tower"),
                              ("llm_backbone_id", "phi-2-3b", "llm_backbone_id 'phi-2-3b' is not supported"),
                              ("model_type", "llava", "expected 'openvla'")):
        (bad / "config.json").write_text(json.dumps({**cfg, field: value}))
        with pytest.raises(ValueError, match=msg):
            inspect_openvla(bad, KEY)
    (bad / "config.json").write_text(json.dumps(cfg))
    # --out would be replaced as a whole: never the source, a directory holding it, or foreign files
    for out, msg in ((bad, "is the source checkpoint"), (tmp_path, "a directory holding the source")):
        with pytest.raises(ValueError, match=msg):
            convert_openvla(bad, out, unnorm_key=KEY)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a checkpoint `vla convert` wrote"):
        convert_openvla(bad, tmp_path / "mine", unnorm_key=KEY)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    shard = shard_files(bad)[-1]
    shard.write_bytes(shard.read_bytes()[:-100])  # an interrupted copy
    with pytest.raises(ValueError, match=f"{shard.name}: truncated"):
        inspect_openvla(bad, KEY)


def test_weights_map_exactly_and_only_unread_tensors_are_dropped(src, converted):
    s = _src_tensors(src)
    d = load_file(str(converted / "model.safetensors"))
    f, g = "vision_backbone.featurizer.", "vision_backbone.fused_featurizer."
    w = s[f + "pos_embed"].shape[-1]
    qkv = s[f + "blocks.1.attn.qkv.weight"].float()
    dino = "vision.model.encoder.layer.1.attention."
    for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
        assert torch.equal(d[dino + name + ".weight"], qkv[i * w:(i + 1) * w])
    pos = d["vision.model.embeddings.position_embeddings"]
    assert torch.equal(pos[0, 0], torch.zeros(w)) and torch.equal(pos[:, 1:], s[f + "pos_embed"].float())
    assert torch.equal(d["vision.model.encoder.layer.0.layer_scale2.lambda1"], s[f + "blocks.0.ls2.scale_factor"].float())
    assert torch.equal(d["vision.fused_tower.model.embeddings.position_embedding.weight"], s[g + "pos_embed"][0].float())
    assert torch.equal(d["vision.fused_tower.model.encoder.layers.1.self_attn.v_proj.bias"],
                       s[g + "blocks.1.attn.qkv.bias"][2 * w:].float())
    assert torch.equal(d["projector.net.4.weight"], s["projector.fc3.weight"].float())
    assert torch.equal(d["lm.lm_head.weight"], s["language_model.lm_head.weight"].float())
    summary = json.loads((converted / "convert.json").read_text())
    skipped = set(summary["skipped_source_tensors"])
    # OpenVLA reads block depth-2: the last block of each tower and SigLIP's pooling head are never used
    expect = {k for k in s if k.startswith((f + "blocks.2.", g + "blocks.2.", g + "attn_pool."))}
    assert skipped == expect
    assert not any(k.startswith(("vision.model.encoder.layer.2.", "vision.fused_tower.model.encoder.layers.2.")) for k in d)


def test_sharded_output_loads_like_one_file(src, converted, tmp_path):
    out = tmp_path / "sharded"
    convert_openvla(src, out, unnorm_key=KEY, dtype="fp32", max_shard_bytes=1 << 20)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2 and not (out / "model.safetensors").exists()
    a = VLAPolicy.from_pretrained(out).state_dict()
    b = VLAPolicy.from_pretrained(converted).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sequence_layout_is_bos_visual_prompt_29871(converted):
    io = PolicyIO.load(converted)
    policy = VLAPolicy.from_pretrained(converted)
    feeds = io.inputs([_obs(0, "  Pick up the RED block ")])
    ids = feeds["prompt_ids"][0][feeds["prompt_mask"][0]].tolist()
    text = io.text.backend.encode("In: What action should the robot take to pick up the red block?\nOut:",
                                  add_special_tokens=False).ids
    assert ids == text + [29871]  # lower-cased, no BOS (it goes first, before the image), 29871 appended
    t = to_tensors(feeds)
    prefix, valid = policy.embed_prefix(t["pixel_values"], t["prompt_ids"], t["prompt_mask"])
    assert feeds["pixel_values"].shape == (1, 1, 6, 224, 224)  # one image, normalized for each tower
    assert prefix.shape[1] == policy.prefix_len == 1 + 256 + io.cfg.text.prompt_len
    assert torch.equal(prefix[0, 0], policy.embed_tokens(torch.tensor([1]))[0])


def test_every_decoding_path_agrees_and_decoding_is_unrestricted(converted):
    policy = VLAPolicy.from_pretrained(converted)
    io = PolicyIO.load(converted)
    assert policy.score_range == (0, 32064) and policy.action_block == (31744, 32000)
    for seed, text in ((0, "pick up the red block"), (1, "move the cube left")):
        t = to_tensors(io.inputs([_obs(seed, text)]))
        ref = decode_autoregressive(policy, t, use_cache=False)
        assert torch.equal(decode_autoregressive(policy, t, use_cache=True, layer_loop=True), ref)
        assert torch.equal(decode_autoregressive(policy, t, use_cache=True, layer_loop=False), ref)
        assert torch.equal(generate_baseline(policy, t), ref)
    # random weights rank ids outside the action block too: such a chunk is invalid, never a clipped action
    chunk = TorchRuntime(policy, io).infer(_obs(0))
    out_of_block = (chunk.ids < 31744) | (chunk.ids >= 32000)
    assert bool(chunk.valid) == (not out_of_block.any())


def test_restricted_decoding_and_exact_unnormalization(src, tmp_path):
    out = tmp_path / "restricted"
    convert_openvla(src, out, unnorm_key="fractal20220817_data", dtype="fp32", restrict_logits=True)
    rt = TorchRuntime.from_checkpoint(out)
    chunk = rt.infer(_obs(3))
    assert bool(chunk.valid) and ((chunk.ids >= 31744) & (chunk.ids < 32000)).all()
    stats = json.loads((src / "config.json").read_text())["norm_stats"]["fractal20220817_data"]["action"]
    centres = (np.linspace(-1, 1, 256)[:-1] + np.linspace(-1, 1, 256)[1:]) / 2
    norm = centres[np.clip(32000 - chunk.ids - 1, 0, 254)]
    lo, hi, mask = np.array(stats["q01"]), np.array(stats["q99"]), np.array(stats["mask"])
    ref = np.where(mask, 0.5 * (norm + 1) * (hi - lo) + lo, norm)  # OpenVLA's predict_action, by hand
    assert np.array_equal(chunk.actions[0], ref.astype(np.float32))


def test_half_precision_keeps_rotary_tables_in_fp32_and_parallel_decoding_is_refused(converted):
    policy = VLAPolicy.from_pretrained(converted, dtype=torch.float16)
    assert policy.lm.lm_head.weight.dtype == torch.float16
    inv = [b for n, b in policy.named_buffers() if n.endswith("inv_freq")]
    assert inv and all(b.dtype == torch.float32 for b in inv)
    t = to_tensors(PolicyIO.load(converted).inputs([_obs(0)]))
    with pytest.raises(ValueError, match="never trained to decode in parallel"):
        TorchRuntime(policy, PolicyIO.load(converted), mode="parallel").infer(_obs(0))
    assert decode_autoregressive(policy, t).shape == (1, 7)


def test_bf16_checkpoint_loads_in_bf16_and_runs(src, tmp_path):
    out = tmp_path / "bf16"
    convert_openvla(src, out, unnorm_key=KEY, dtype="bf16")
    header, _ = read_header(out / "model.safetensors")
    assert {i.dtype for i in header.values()} == {torch.bfloat16}
    rt = TorchRuntime.from_checkpoint(out)
    assert rt.policy.lm.lm_head.weight.dtype == torch.bfloat16
    assert rt.infer(_obs(0)).ids.shape == (7,)


def test_stream_writer_round_trips_through_safetensors(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {"a": torch.randn(3, 5, generator=g), "b": torch.randn(7, generator=g).to(torch.bfloat16),
               "c": torch.arange(6).reshape(2, 3), "d": torch.tensor([True, False, True]), "e": torch.zeros(0)}
    with ShardedWriter(tmp_path, max_shard_bytes=40) as w:
        for k, v in tensors.items():
            w.plan(k, v.dtype, tuple(v.shape))
        w.open()
        for k, v in tensors.items():
            w.write(k, v)
        weight_map = w.close()
    assert len(set(weight_map.values())) > 1
    back = {}
    for f in shard_files(tmp_path):
        back.update(load_file(str(f)))  # the reference reader agrees with what we wrote
        h, _ = read_header(f)
        for k, info in h.items():
            assert torch.equal(read_tensor(f, info), back[k])
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)
    (tmp_path / "x").mkdir()
    with ShardedWriter(tmp_path / "x") as w:
        w.plan("a", torch.float32, (2,))
        w.open()
        with pytest.raises(RuntimeError, match="expected 'a'"):
            w.write("b", torch.zeros(2))


def test_letterbox_by_hand():
    img = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    out = letterbox(img, 4, (9, 8, 7))  # pad one row top and bottom: already 4 x 4, no resize
    expect = np.empty((4, 4, 3), np.uint8)
    expect[:] = (9, 8, 7)
    expect[1:3] = img
    assert np.array_equal(out, expect)
    odd = np.zeros((3, 4, 3), np.uint8)  # int((4 - 3) / 2) = 0 rows: stays 3 x 4, resized 4 x 5, centre-cropped
    assert letterbox(odd, 4, (1, 1, 1)).shape == (4, 4, 3)


def test_cli_converts_and_refuses_with_exit_2(src, tmp_path, capsys):
    assert main(["convert", "openvla", "--checkpoint", str(src), "--out", str(tmp_path / "c")]) == 2
    assert "choose one with --unnorm-key: bridge_orig, fractal20220817_data" in capsys.readouterr().err
    assert main(["convert", "openvla", "--checkpoint", str(src), "--out", str(tmp_path / "c"), "--unnorm-key", KEY,
                 "--dtype", "fp32", "--camera", "front"]) == 0
    rt = TorchRuntime.from_checkpoint(tmp_path / "c")
    assert rt.io.cfg.cameras == ("front",)
    assert rt.infer({"front": _obs(0)["agentview"], "instruction": "pick"}).actions.shape == (1, 7)


def test_lora_fine_tune_from_a_converted_checkpoint(converted, tmp_path):
    from tests.vla.train.helpers import write_synthetic_dataset
    from vla.train import TrainConfig, train
    from vla.train.config import LoraSettings

    data = write_synthetic_dataset(tmp_path / "ds", episodes=2, length=4, size=64)
    cfg = TrainConfig(init_from=str(converted), max_steps=2, batch_size=2, warmup_steps=0, bin_sigma=0.0,
                      augment=None, start_oversample=None, val_fraction=0.0, val_every=10, save_every=10, log_every=1,
                      lora=LoraSettings(r=4), freeze_vision=True)
    before = VLAPolicy.from_pretrained(converted).state_dict()
    train(cfg, data, tmp_path / "run", progress=False)
    tuned = VLAPolicy.from_pretrained(tmp_path / "run" / "checkpoint")
    after = tuned.state_dict()
    assert after.keys() == before.keys()  # LoRA merged back: the same architecture, exportable as before
    assert not torch.equal(after["lm.model.layers.0.self_attn.q_proj.weight"], before["lm.model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(after["vision.model.embeddings.patch_embeddings.projection.weight"],
                       before["vision.model.embeddings.patch_embeddings.projection.weight"])
    assert TorchRuntime.from_checkpoint(tmp_path / "run" / "checkpoint").infer(_obs(0)).ids.shape == (7,)
