"""Training building blocks: augmentation, LR schedule, config validation, optimizer state round trip."""

from __future__ import annotations

import pytest
import torch

from vla.train.augment import augment_images
from vla.train.config import AugmentConfig, TrainConfig
from vla.train.metrics import lr_lambda
from vla.train.state import load_train_state, save_train_state


def test_augmentation_is_seeded_and_bounded() -> None:
    imgs = torch.randint(0, 256, (2, 2, 16, 16, 3), dtype=torch.uint8)
    a = augment_images(imgs, AugmentConfig(), torch.Generator().manual_seed(0))
    b = augment_images(imgs, AugmentConfig(), torch.Generator().manual_seed(0))
    c = augment_images(imgs, AugmentConfig(), torch.Generator().manual_seed(1))
    assert a.shape == (2, 2, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_lr_schedule_warms_up_then_decays_to_the_floor() -> None:
    vals = [lr_lambda(s, 10, 100, 0.1) for s in range(100)]
    assert vals[0] == pytest.approx(0.1) and vals[9] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(vals[10:], vals[11:], strict=False))
    assert lr_lambda(100, 10, 100, 0.1) == pytest.approx(0.1)


@pytest.mark.parametrize("field, value", [("max_steps", 0), ("precision", "fp8"), ("val_fraction", 1.0), ("lr", 0),
                                          ("augment", {"shift": 0.1}), ("bin_sigma", -1.0)])
def test_invalid_train_config_names_the_field(field: str, value) -> None:
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


def test_train_defaults_are_the_shipped_recipe_and_couplings_are_checked() -> None:
    from vla.config import ActionConfig, debug_config
    from vla.train.config import StartOversample

    assert TrainConfig() == TrainConfig.load("tiny")
    with pytest.raises(ValueError, match="StartOversample.steps"):
        StartOversample(steps=0)
    fast = debug_config(tokenizer="fast").replace(action=ActionConfig(tokenizer="fast", decoding="autoregressive"))
    with pytest.raises(ValueError, match="TrainConfig.bin_sigma.*bins tokenizer"):  # FAST tokens are not ordered
        TrainConfig(model=fast.to_dict(), bin_sigma=2.0).model_config()
    assert TrainConfig(model=fast.to_dict(), bin_sigma=0.0).model_config().action.tokenizer == "fast"
    # dotted overrides reach into the model config (train on teleop data without the privileged aux head)
    cfg = TrainConfig.load("tiny", {"model.aux": None, "model.action.execute_steps": 4}).model_config()
    assert cfg.aux is None and cfg.action.execute_steps == 4 and cfg.film is not None
    with pytest.raises(ValueError, match="TrainConfig: unknown keys"):
        TrainConfig.load("tiny", {"start_until": 5})  # a removed experiment


def test_unknown_yaml_keys_are_rejected(tmp_path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text("max_step: 5\n")
    with pytest.raises(ValueError, match="max_step"):
        TrainConfig.from_yaml(p)


def test_optimizer_state_round_trips_without_pickle(tmp_path) -> None:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_train_state(tmp_path / "st", opt, step=7, extra={"note": "x"})
    opt2 = torch.optim.AdamW(net.parameters(), lr=0.5)
    step, extra = load_train_state(tmp_path / "st", opt2)
    assert step == 7 and extra == {"note": "x"}
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["lr"] == 0.1
    for k in s1["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(s1["state"][k][name], s2["state"][k][name])


def test_several_datasets_concatenate_without_crossing_episodes(tmp_path) -> None:
    import numpy as np

    from tests.vla.train.helpers import write_synthetic_dataset
    from vla.train.data import chunk_targets, load_frames

    a = write_synthetic_dataset(tmp_path / "a", episodes=2, length=4, size=16, seed=0)
    b = write_synthetic_dataset(tmp_path / "b", episodes=3, length=5, size=16, seed=1)
    f = load_frames([a, b], ("agentview", "wrist"), image_size=8)
    assert len(f) == 2 * 4 + 3 * 5 and len(np.unique(f.episode)) == 5
    assert f.images.shape == (23, 2, 8, 8, 3)
    assert sorted(f.tasks) == ["pick up the red cube", "push the green cube"]
    _, inside = chunk_targets(f, np.array([7, 8]), horizon=3)  # last frame of a's 2nd episode, first of b's
    assert inside.tolist() == [[True, False, False], [True, True, True]]
    # loaded side by side, concatenated in the order given
    fa, fb = (load_frames(r, ("agentview", "wrist"), image_size=8) for r in (a, b))
    assert torch.equal(f.images, torch.cat([fa.images, fb.images]))
    np.testing.assert_array_equal(f.actions, np.concatenate([fa.actions, fb.actions]))
    with pytest.raises(FileNotFoundError):  # a bad root fails the whole load
        load_frames([a, tmp_path / "missing"], ("agentview", "wrist"), image_size=8)


def test_pick_frames_draws_with_the_weights() -> None:
    """pick_frames: draws follow the weights (here: only the start frames); None = uniform; replacement only if short."""
    import numpy as np

    from vla.train.data import pick_frames

    idx = np.arange(10)
    w = np.where(idx < 2, 0.5, 0.0)  # all the mass on frames 0 and 1
    for step in range(5):
        assert set(pick_frames(np.random.default_rng(step), idx, 64, w)) <= {0, 1}
    uniform = np.concatenate([pick_frames(np.random.default_rng(s), idx, 8, None) for s in range(5)])
    assert len(set(uniform)) == 10  # uniform: every frame is drawn
    assert len(set(pick_frames(np.random.default_rng(0), idx, 10, None))) == 10  # enough frames: no replacement
    assert len(pick_frames(np.random.default_rng(0), idx[:3], 8, None)) == 8  # too few: with replacement


def test_start_of_episode_sampling_weights() -> None:
    """Frames with position-in-episode < steps get weight x the probability; episodes of any length."""
    import numpy as np
    import torch

    from vla.train.config import StartOversample
    from vla.train.data import Frames, sampling_weights

    episode = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])  # lengths 4, 3, 5
    n = len(episode)
    f = Frames(torch.zeros(n, 1, 2, 2, 3, dtype=torch.uint8), np.zeros((n, 0), np.float32), np.zeros((n, 7), np.float32),
               np.zeros(n, np.int64), ["t"], episode, np.zeros(n, np.int64))
    assert sampling_weights(f, np.arange(n), StartOversample(2, 1.0)) is None
    assert sampling_weights(f, np.arange(n), None) is None
    idx = np.array([0, 1, 2, 3, 5, 6, 7, 8, 9, 11])  # a training subset: frame 4 (episode 1's first) held out
    p = sampling_weights(f, idx, StartOversample(2, 3.0))
    early = np.array([1, 1, 0, 0, 1, 0, 1, 1, 0, 0], bool)  # positions 0,1,2,3 | 1,2 | 0,1,2,4
    np.testing.assert_allclose(p, np.where(early, 3.0, 1.0) / (3.0 * early.sum() + (~early).sum()))
