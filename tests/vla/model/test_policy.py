"""Policy config validation, dummy inputs, save/load round trip and prediction shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.vla.model.conftest import (
    io_of,
    make_obs,
    make_policy,
    prepare,
    runtime,
)
from vla.config import (
    ActionConfig,
    AuxConfig,
    FastConfig,
    FiLMConfig,
    ProjectorConfig,
    TextConfig,
    VLAConfig,
    debug_config,
    migrate_v1,
)
from vla.model.policy import VLAPolicy
from vla.model.runtime import TorchRuntime
from vla.model.sequence import example_batch
from vla.policy_io import PolicyIO


def test_config_round_trips_through_a_dict() -> None:
    cfg = debug_config(projector="resampler", decoding="parallel")
    again = VLAConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    d = cfg.to_dict()
    d["action"]["execute_steps"] = 1  # the re-planning default travels with the checkpoint's config
    assert VLAConfig.from_dict(json.loads(json.dumps(d))).action.steps_per_plan == 1
    assert cfg.action.execute_steps is None and cfg.action.steps_per_plan == cfg.action.horizon


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda: ActionConfig(decoding="beam"), "ActionConfig.decoding"),
        (lambda: ActionConfig(tokenizer="fast", decoding="parallel"), "ActionConfig.decoding"),
        (lambda: ActionConfig(horizon=0), "ActionConfig.horizon"),
        (lambda: ActionConfig(horizon=4, execute_steps=0), "ActionConfig.execute_steps"),
        (lambda: ActionConfig(horizon=4, execute_steps=5), "ActionConfig.execute_steps"),
        (lambda: TextConfig(vocab_size=100), "TextConfig.vocab_size"),
        (lambda: VLAConfig(cameras=()), "VLAConfig.cameras"),
        (lambda: VLAConfig(prompt_template="no slot"), "VLAConfig.prompt_template"),
        (lambda: VLAConfig.from_dict({"lm": {"hidden": 3}}), "unknown keys"),
        # couplings: a field that only applies to another choice is refused, naming both
        (lambda: ProjectorConfig(type="mlp", num_queries=8), "ProjectorConfig.num_queries.*resampler"),
        (lambda: ProjectorConfig(type="resampler", shuffle_factor=2), "ProjectorConfig.shuffle_factor.*pixel_shuffle"),
        (lambda: ActionConfig(tokenizer="bins", fast=FastConfig()), "ActionConfig.fast.*'fast'"),
        (lambda: ActionConfig(decoding="autoregressive", parallel_attention="causal"), "ActionConfig.parallel_attention"),
        (lambda: TextConfig(kind="embedded", path="/x"), "TextConfig.path"),
        (lambda: AuxConfig(state_dim=0), "AuxConfig.state_dim"),
        (lambda: AuxConfig(weight=0.0), "AuxConfig.weight"),
        (lambda: FiLMConfig(pool_scale=0.0), "FiLMConfig.pool_scale"),
        (lambda: VLAConfig(state_dim=0), "VLAConfig.state_dim"),
        (lambda: VLAConfig.from_dict({"pointer_token": True}), "unknown keys"),  # removed experiments are gone
        (lambda: VLAConfig.from_dict({"prefix_attention": "causal"}), "unknown keys"),
    ],
)
def test_invalid_configs_name_the_field(bad, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bad()


def test_example_batch_runs_forward_in_both_modes(ar_policy) -> None:
    batch = example_batch(ar_policy.cfg, batch_size=3, text_vocab=ar_policy.text_vocab_size)
    assert batch["pixel_values"].shape == (3, 2, 3, 32, 32)
    n = ar_policy.num_action_tokens
    logits = ar_policy(**batch, mode="parallel")
    assert logits.shape == (3, n, ar_policy.vocab_size)
    ids = torch.full((3, n), ar_policy.vocab_size - 1)
    assert ar_policy(**batch, action_ids=ids).shape == (3, n, ar_policy.vocab_size)


def test_dataclass_defaults_are_the_shipped_default_and_variants_inherit() -> None:
    """VLAConfig() is the named embedded default; a variant YAML (`base: tiny`) differs only where it says."""
    assert VLAConfig() == VLAConfig.load("tiny")
    mlp = VLAConfig.load("tiny_mlp")
    assert mlp.projector == ProjectorConfig(type="mlp") and mlp.replace(projector=ProjectorConfig(), name="tiny") == VLAConfig()
    res = VLAConfig.load("tiny_resampler").projector
    assert (res.num_queries, res.num_heads, res.shuffle_factor) == (16, 4, None)
    with pytest.raises(FileNotFoundError, match="named model configs: .*tiny"):
        VLAConfig.load("no_such_config")


def test_v1_checkpoint_configs_migrate_and_removed_experiments_are_refused() -> None:
    old = {"use_state": False, "aux_state_dim": 6, "aux_source": "visual", "film": True, "pointer_token": False,
           "prefix_attention": "causal", "projector": {"type": "mlp", "num_queries": 16, "num_heads": 4},
           "action": {"tokenizer": "fast", "fast_tokens": 128, "fast_max_tokens": 24, "horizon": 2}}
    cfg = VLAConfig.from_dict(migrate_v1(old))
    assert cfg.state_dim is None and cfg.aux == AuxConfig(state_dim=6) and cfg.film == FiLMConfig()
    assert cfg.projector == ProjectorConfig(type="mlp") and cfg.action.fast == FastConfig(tokens=128, max_tokens=24)
    for bad, what in (({"pointer_token": True}, "pointer_token"), ({"prefix_attention": "bidirectional"}, "prefix_attention"),
                      ({"aux_state_dim": 6, "aux_source": "actions"}, "aux_source")):
        with pytest.raises(ValueError, match=what):
            migrate_v1(bad)


def test_save_load_gives_identical_actions(tmp_path, ar_policy) -> None:
    obs = [make_obs(0), make_obs(5, "stack the cubes")]
    before = runtime(ar_policy).infer_batch(obs).actions
    ar_policy.save_pretrained(tmp_path / "ckpt", io_of(ar_policy))
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["config.json", "model.safetensors", "norm_stats.json", "tokenizer.json"]
    loaded = TorchRuntime.from_checkpoint(tmp_path / "ckpt")
    np.testing.assert_array_equal(loaded.infer_batch(obs).actions, before)
    assert loaded.predict_action(obs[0]).shape == (2, 7)
    # saving over an existing checkpoint replaces it atomically (no leftovers next to it)
    ar_policy.save_pretrained(tmp_path / "ckpt", io_of(ar_policy))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_truncated_or_mismatched_weights_are_refused_naming_the_file(tmp_path, ar_policy) -> None:
    ar_policy.save_pretrained(tmp_path / "ckpt", io_of(ar_policy))
    w = tmp_path / "ckpt" / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])  # an interrupted copy
    with pytest.raises(ValueError, match=r"model\.safetensors: truncated"):
        VLAPolicy.from_pretrained(tmp_path / "ckpt")
    w.write_bytes(b"\x00" * 4)
    with pytest.raises(ValueError, match="not a safetensors file"):
        VLAPolicy.from_pretrained(tmp_path / "ckpt")
    w.unlink()
    with pytest.raises(FileNotFoundError, match="no weights"):
        VLAPolicy.from_pretrained(tmp_path / "ckpt")


def test_prediction_is_in_robot_units(ar_policy) -> None:
    acts = runtime(ar_policy).predict_action(make_obs(0))
    q01, q99 = io_of(ar_policy).normalizers["action"].stats.q01, io_of(ar_policy).normalizers["action"].stats.q99
    assert np.all(acts[:, :6] >= q01[:6] - 1e-6) and np.all(acts[:, :6] <= q99[:6] + 1e-6)
    assert np.all(np.abs(acts[:, 6]) <= 1.0)  # gripper stays in [-1, 1], unnormalized


def test_missing_inputs_are_explicit_errors(ar_policy) -> None:
    obs = make_obs(0)
    del obs["wrist"]
    rt = runtime(ar_policy)
    with pytest.raises(ValueError, match="wrist"):
        rt.predict_action(obs)
    with pytest.raises(ValueError, match="prompt_len"):
        rt.predict_action(make_obs(0, "pick up " * 60))
    with pytest.raises(ValueError, match="'action' normalizer"):
        ar_policy.make_io({})
    with pytest.raises(ValueError, match="observation.state"):
        ar_policy.make_io({"action": io_of(ar_policy).normalizers["action"]})
    batch = example_batch(ar_policy.cfg, 2)  # no env_state: a policy with an aux head refuses, never drops the loss
    aux = make_policy(aux=AuxConfig(state_dim=6))
    n = aux.num_action_tokens
    with pytest.raises(ValueError, match="env_state"):
        aux.compute_loss({**batch, "action_ids": torch.full((2, n), aux.vocab_size - 1),
                          "action_mask": torch.ones(2, n, dtype=torch.bool)})
    with pytest.raises(ValueError, match="instructions"):
        VLAPolicy.from_config(debug_config(film=FiLMConfig()))  # FiLM's idf prior needs the training prompts


def test_soft_bin_loss_is_ordinal_and_tends_to_cross_entropy() -> None:
    """bin_sigma: a near-miss costs less than a far miss; a tiny sigma gives back the one-hot cross-entropy."""
    import torch.nn.functional as F

    policy = make_policy(projector="linear", decoding="parallel")
    v, r = policy.vocab_size, policy.cfg.action.num_reserved_ids
    tgt = torch.tensor([v - 100])

    def logits_peaked_at(i: int) -> torch.Tensor:
        x = torch.full((1, v), -1e4)
        x[0, v - r:] = 0.0
        x[0, i] = 8.0
        return x
    near = policy._soft_bin_loss(logits_peaked_at(v - 101), tgt, 2.0)
    far = policy._soft_bin_loss(logits_peaked_at(v - 160), tgt, 2.0)
    assert near < far
    x = torch.randn(3, v).masked_fill(~policy.action_logit_mask, float("-inf"))
    t = torch.tensor([v - 1, v - r, v - 7])
    torch.testing.assert_close(policy._soft_bin_loss(x, t, 1e-3), F.cross_entropy(x, t))
    # FAST tokens are not ordered: refused
    fast = make_policy(projector="linear", decoding="autoregressive", tokenizer="fast")
    with pytest.raises(ValueError, match="bins tokenizer"):
        fast.compute_loss({}, bin_sigma=1.0)


def test_visual_position_embedding_distinguishes_token_order() -> None:
    """With visual_pos_embed, swapping two cameras' images changes the prediction input; the parameter
    round-trips through save/load and the config."""
    policy = make_policy(projector="mlp", decoding="parallel", visual_pos_embed=True)
    assert policy.visual_pos is not None and policy.visual_pos.shape == (policy.num_visual_tokens, policy.hidden_size)
    b = example_batch(policy.cfg, 1)
    prefix, _ = policy.embed_prefix(b["pixel_values"], b["prompt_ids"], b["prompt_mask"], b["state"])
    with torch.no_grad():
        policy.visual_pos.zero_()
    base, _ = policy.embed_prefix(b["pixel_values"], b["prompt_ids"], b["prompt_mask"], b["state"])
    k = policy.num_visual_tokens
    assert not torch.allclose(prefix[:, :k], base[:, :k]) and torch.equal(prefix[:, k:], base[:, k:])


def test_film_conditions_the_image_tokens_on_the_instruction(tmp_path) -> None:
    """film=True: zero-initialised it changes nothing; trained, the image tokens depend on the instruction
    (and only on its real tokens, not on the padding); the weights get gradients and survive save/load."""
    policy = make_policy(projector="pixel_shuffle", decoding="parallel", film=FiLMConfig())
    assert policy.film is not None and policy.film.proj.out_features == 2 * policy.vision.hidden_size
    k = policy.num_visual_tokens
    red, blue = (prepare(policy, [make_obs(0, text)]) for text in ("pick up the red cube", "lift"))
    blue["pixel_values"], blue["state"] = red["pixel_values"], red["state"]  # same images, other instruction

    def visual(inputs: dict) -> torch.Tensor:
        with torch.no_grad():
            return policy.embed_prefix(**inputs)[0][:, :k]

    assert torch.equal(visual(red), visual(blue))  # zero init: the identity
    with torch.no_grad():
        policy.film.proj.weight.normal_(0.0, 0.5)
    assert not torch.allclose(visual(red), visual(blue))
    padded = dict(red, prompt_ids=red["prompt_ids"].masked_fill(~red["prompt_mask"].bool(), 7))
    assert torch.equal(visual(red), visual(padded))  # the pooling ignores what sits under the padding
    action_ids, action_mask = io_of(policy).targets(np.zeros((1, 2, 7)))
    batch = {**red, "action_ids": torch.from_numpy(action_ids), "action_mask": torch.from_numpy(action_mask)}
    policy.compute_loss(batch)[0].backward()
    assert policy.film.proj.weight.grad is not None and policy.film.proj.weight.grad.abs().sum() > 0
    policy.eval().save_pretrained(tmp_path / "ckpt", io_of(policy))
    loaded = VLAPolicy.from_pretrained(tmp_path / "ckpt")
    assert loaded.cfg.film and torch.equal(loaded.film.proj.weight, policy.film.proj.weight)
    obs = make_obs(3, "lift")
    np.testing.assert_array_equal(TorchRuntime(loaded, PolicyIO.load(tmp_path / "ckpt")).predict_action(obs),
                                  runtime(policy).predict_action(obs))


def test_film_prompt_pooling_starts_from_idf_over_the_training_prompts(tmp_path) -> None:
    """Template tokens (in every prompt) get ~no pooling weight; the words that tell prompts apart do; the
    prior is saved with the weights."""
    words = ["reach the red cube", "reach the blue cube", "pick up the red cube", "pick up the blue cube"]
    torch.manual_seed(0)
    policy = VLAPolicy.from_config(debug_config(projector="pixel_shuffle", decoding="parallel", film=FiLMConfig()),
                                   instructions=words)
    io = make_policy().make_io(io_of(make_policy()).normalizers)  # any io: prompt ids depend on the template only
    io = policy.make_io(io.normalizers)
    sets = [set(io.prompt_ids(w)) for w in words]
    shared = set.intersection(*sets)  # the template and "the cube"
    red_only = (sets[0] & sets[2]) - sets[1] - sets[3]  # the colour word's tokens
    assert shared and red_only
    assert all(float(policy.film.idf[i]) == pytest.approx(0.0) for i in shared)
    assert all(float(policy.film.idf[i]) == pytest.approx(np.log(5 / 3)) for i in red_only)
    unseen = set(io.prompt_ids("hover over the green block")) - set.union(*sets)  # a held-out paraphrase
    assert unseen and all(float(policy.film.idf[i]) == 0.0 for i in unseen)  # untrained words get no weight
    policy.save_pretrained(tmp_path / "ckpt", io)
    assert torch.equal(VLAPolicy.from_pretrained(tmp_path / "ckpt").film.idf, policy.film.idf)
