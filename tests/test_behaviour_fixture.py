"""Behaviour kept across the redesign: the same checkpoint gives bit-identical actions on every path.

The fixture (tests/fixtures/behaviour/README.md) was recorded by the code before the redesign; every array
here must equal it exactly (np.array_equal, not allclose).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from deploy.export import export_onnx
from deploy.runtimes import make_runtime
from vla.chunking import make_executor
from vla.model.policy import VLAPolicy
from vla.policy_io import PolicyIO

FIX = Path(__file__).parent / "fixtures" / "behaviour"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The fixture was recorded with 1 torch thread (as `vla eval` runs): conv and matmul reductions split
    over more threads round differently, and a near-tie between two bins can then flip."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def recorded():
    data = dict(np.load(FIX / "behaviour.npz"))
    meta = json.loads((FIX / "behaviour.json").read_text())
    obs = [{"agentview": data["agentview"][i], "wrist": data["wrist"][i], "state": data["state"][i],
            "instruction": meta["instructions"][i]} for i in range(len(meta["instructions"]))]
    return data, meta, obs


@pytest.mark.parametrize("mode", ["parallel", "autoregressive"])
def test_torch_runtime_matches_recording(recorded, mode):
    data, _, obs = recorded
    rt = make_runtime("torch", FIX / "checkpoint", mode=mode)
    got = np.stack([rt.predict_action(o) for o in obs])
    assert np.array_equal(got, data[f"torch_{mode}"])
    batched = np.concatenate([rt.infer_batch(obs[i:i + 10]).actions for i in range(0, len(obs), 10)])
    assert np.array_equal(batched, data[f"torch_batch_{mode}"])


def test_onnx_runtime_matches_recording(recorded, tmp_path):
    data, _, obs = recorded
    ckpt = FIX / "checkpoint"
    export_onnx(VLAPolicy.from_pretrained(ckpt), PolicyIO.load(ckpt), tmp_path / "onnx")
    for mode in ("parallel", "autoregressive"):
        rt = make_runtime("onnx", tmp_path / "onnx", mode=mode, threads=1)
        assert np.array_equal(np.stack([rt.predict_action(o) for o in obs]), data[f"onnx_{mode}"]), mode


@pytest.mark.parametrize("mode,k", [("receding", 2), ("open_loop", 1), ("ensemble", 1)])
def test_executor_matches_recording(recorded, mode, k):
    data, _, _ = recorded
    ex = make_executor(mode, replan_every=k, ensemble_m=0.01)
    rows = []
    for t in range(100):
        if ex.needs_plan(t):
            assert ex.add_plan(t, data["torch_parallel"][t], origin_ns=t)
        st = ex.action(t)
        rows.append(np.r_[st.action, st.origin_step, st.origin_ns])
    assert np.array_equal(np.stack(rows), data[f"executor_{mode}"])


class Recorder:
    """The eval runner, with every action it sends kept."""

    def __init__(self, runner):
        self.runner, self.steps = runner, []

    def reset(self):
        self.runner.reset()

    def __call__(self, o):
        a = self.runner(o)
        self.steps.append(a.copy())
        return a


def test_eval_path_matches_recording(recorded):
    import sim
    from vla.evaluation import ChunkedPolicy, evaluate

    data, meta, _ = recorded
    for task in ("ReachCube", "PickCube"):
        rec = Recorder(ChunkedPolicy(make_runtime("torch", FIX / "checkpoint")))
        rep = evaluate(rec, lambda t=task: sim.make(t, image_size=64), episodes=2, seed=10000)
        assert [r["success"] for r in rep["per_episode"]] == meta["episodes"][task]["success"]
        assert [r["length"] for r in rep["per_episode"]] == meta["episodes"][task]["length"]
        got, want = np.stack(rec.steps), data[f"eval_{task}_actions"]
        if np.array_equal(got, want):
            continue
        # Closed loop, bit-exactness holds on the CPU the fixture was recorded on (an Intel one). Elsewhere
        # (seen on AMD EPYC, 2026-12-04) torch's CPU kernels and the software renderer round differently in
        # the last bit, so a near-tie between two bins can flip at some step, and the rollout diverges from
        # there. What must hold: every step before the first difference is bit-identical, that difference
        # is one token's argmax (one action dimension: a near tie, not a behaviour change; this 300-step
        # policy's logits are flat enough that the runner-up may be a few bins away), and the outcomes
        # above are the recorded ones.
        first = int(np.flatnonzero((got != want).any(1))[0])
        assert first > 0 and np.array_equal(got[:first], want[:first]), task
        assert int((got[first] != want[first]).sum()) == 1, (task, first)
