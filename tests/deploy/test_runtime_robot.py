"""Runtimes (callable adapter, torch checkpoint) and the real-arm adapter contract."""

from __future__ import annotations

import time

import numpy as np
import pytest

from deploy.bridge import BridgeClient
from deploy.robot import EEDeltaDriver, RealArmRobot
from vla.model.runtime import TorchRuntime
from vla.runtime import PolicyRuntime


class _Counter:
    def __init__(self):
        self.resets = 0

    def __call__(self, obs):
        return np.ones(7)

    def reset(self):
        self.resets += 1


def test_policy_runtime_shapes_and_reset():
    p = _Counter()
    rt = PolicyRuntime(p)
    assert rt.predict_action({}).shape == (1, 7) and rt.predict_action({}).dtype == np.float32
    rt.reset()
    assert p.resets == 1
    with pytest.raises(ValueError, match=r"expected \[7\] or \[H, 7\]"):
        PolicyRuntime(lambda obs: np.zeros(6)).predict_action({})
    assert PolicyRuntime(lambda obs: np.zeros((4, 7))).predict_action({}).shape == (4, 7)
    assert rt.execute_steps is None  # a plain callable says nothing: `vla control` re-plans every step


def test_torch_runtime_execute_steps_comes_from_the_policy_config():
    from tests.vla.model.conftest import io_of, make_policy
    from vla.config import ActionConfig

    policy = make_policy(decoding="parallel")
    io = io_of(policy)
    assert TorchRuntime(policy, io).execute_steps is None  # the debug config leaves it unset: the whole chunk
    cfg = policy.cfg.replace(action=ActionConfig(horizon=2, decoding="parallel", execute_steps=1))
    shipped = make_policy(cfg)
    assert TorchRuntime(shipped, io_of(shipped)).execute_steps == 1
    with pytest.raises(ValueError, match="mode="):
        TorchRuntime(policy, io, mode="beam")


class _LoggingDriver(EEDeltaDriver):
    """A test double recording what the adapter sends (not a robot)."""

    def __init__(self):
        self.calls = []

    def read_state(self):
        return np.array([0.4, 0, 0.3, 1, 0, 0, 0, 0.08], np.float32)

    def read_images(self):
        return {"agentview": np.zeros((8, 8, 3), np.uint8)}

    def send_ee_delta(self, delta, gripper):
        self.calls.append(("delta", delta.tolist(), gripper))

    def hold(self):
        self.calls.append(("hold",))

    def home(self):
        self.calls.append(("home",))


def test_real_arm_adapter_through_bridge(make_bridge):
    driver = _LoggingDriver()
    server = make_bridge(robot=RealArmRobot(driver, "wipe the table", control_hz=50.0))
    with BridgeClient(server.endpoint) as c:
        o = c.observe()
        assert o.obs["instruction"] == "wipe the table" and o.obs["agentview"].shape == (8, 8, 3)
        c.act(np.array([0.5, 0, 0, 0, 0, 0, 1.0]), obs_seq=o.obs_seq, deadline_ns=o.t_bridge + 10**9)
        while c.stats().get("executed", 0) < 1:  # executed at the next 50 Hz tick
            time.sleep(0.01)
        time.sleep(0.1)  # no further actions: the following ticks hold
        c.reset()
    server.stop()
    deltas = [x for x in driver.calls if x[0] == "delta"]
    assert deltas == [("delta", [0.05, 0.0, 0.0, 0.0, 0.0, 0.0], 1.0)]  # clamped before the driver sees it
    assert ("hold",) in driver.calls and ("home",) in driver.calls
    with pytest.raises(ValueError, match="instruction"):
        RealArmRobot(driver, "")


def test_torch_runtime_checkpoint_runs_episode_to_horizon(make_bridge, tmp_path):
    """A tiny policy *trained* with `vla.train` (a few steps on a small demo set) drives the sim over ZeroMQ."""
    import torch

    from deploy.control import ControlConfig, ControlLoop
    from deploy.robot import SimRobot
    from tests.vla.train.helpers import write_synthetic_dataset
    from vla.config import debug_config
    from vla.train import TrainConfig, train

    torch.manual_seed(0)
    data = write_synthetic_dataset(tmp_path / "demos", episodes=2, length=6)
    cfg = TrainConfig(model=debug_config(horizon=2).to_dict(), max_steps=8, batch_size=4, warmup_steps=0,
                      val_fraction=0.0, val_every=1000, log_every=4, save_every=1000, augment=None)
    train(cfg, data, tmp_path / "run", progress=False)
    rt = TorchRuntime.from_checkpoint(tmp_path / "run" / "checkpoint")
    assert rt.execute_steps is None and rt.cfg.action.horizon == 2  # the checkpoint's own config
    server = make_bridge(robot=SimRobot("ReachCube", horizon=6, image_size=32), lockstep=True)
    with BridgeClient(server.endpoint, timeout_s=10.0) as c:
        rep = ControlLoop(c, rt, ControlConfig(hz=100, chunk_mode="open_loop", stop_on_success=False)).run_episode(0)
    assert rep.steps == 6  # the sim truncated at its horizon; every step went through the torch policy
    # restricted decoding always yields valid bins: every step executes the policy's own action (a policy that
    # never acts would leave "executed" short and show up as no_action)
    assert rep.counts["plans"] == 3 and rep.counts["executed"] == 6 and "no_action" not in rep.counts
