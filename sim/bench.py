"""Simulator benchmarks (called by scripts/bench_sim.py): physics rate, env step rate, overhead vs raw MuJoCo,
and scripted-expert success over many seeds.

The raw-MuJoCo baseline does what a hand-written loop would: the same compiled model, the same number
of `mj_step`s per policy step with constant joint targets, and the same two camera renders with the
same flags, but no IK, no observation assembly, no success check. `overhead = baseline_rate / env_rate`.

    from sim.bench import physics_rate, step_rates, expert_success
"""

from __future__ import annotations

import time

import mujoco
import numpy as np

from sim.registry import make, make_expert


def physics_rate(task: str, seconds: float = 2.0) -> dict[str, float]:
    """Bare mj_step calls per second on the task's model (robot holding still, objects resting)."""
    env = make(task, image_size=16)
    env.reset(seed=0)
    m, d = env.model, env.data
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(100):
            mujoco.mj_step(m, d)
        n += 100
    dt = time.perf_counter() - t0
    # the controller's per-physics-step cost in isolation (what the env adds to each mj_step)
    ctrl = env.controller
    ctrl.hold(d)
    reps = 5000
    t1 = time.perf_counter()
    for _ in range(reps):
        ctrl.apply(d)
    apply_s = (time.perf_counter() - t1) / reps
    env.close()
    return {
        "physics_steps_per_s": n / dt,
        "mj_step_us": 1e6 * dt / n,
        "ik_controller_us_per_physics_step": 1e6 * apply_s,
        "physics_dt": float(m.opt.timestep),
        "realtime_factor": n / dt * m.opt.timestep,
    }


def _actions(task: str, env, n: int) -> list[np.ndarray]:
    """A realistic action stream: the expert's, replayed from seed 0 (episodes restarted as needed)."""
    expert = make_expert(task, env)
    out: list[np.ndarray] = []
    seed = 0
    while len(out) < n:
        expert.reset()
        obs, _ = env.reset(seed=seed)
        done = False
        while not done and len(out) < n:
            a = expert(obs)
            out.append(a)
            obs, _, term, trunc, _ = env.step(a)
            done = term or trunc
        seed += 1
    return out


def step_rates(
    task: str, image_size: int, steps: int = 60, repeats: int = 3, **overrides
) -> dict[str, float]:
    """env.step rate (both cameras every step) vs raw MuJoCo replaying the same motion; best of `repeats`.

    The baseline starts from the env's post-reset state, replays the joint targets the env's
    controller wrote at every physics step (recorded in an untimed pass; MuJoCo is deterministic, so
    it reproduces the env's trajectory exactly) and renders the same two cameras with the same flags.
    Env and baseline steps alternate one by one and each step's time is its fastest of `repeats`, so a
    shared machine's load spikes bias neither side.
    """
    env = make(task, image_size=image_size, terminate_on_success=False, **overrides)
    actions = _actions(task, env, steps)
    m, cfg = env.model, env.config
    # untimed pass: record the controls the controller writes at every physics step
    ctrls = np.zeros((steps, cfg.n_substeps, m.nu))
    apply = env.controller.apply
    k_j = [0, 0]

    def recording_apply(data: mujoco.MjData) -> None:
        apply(data)
        ctrls[k_j[0], k_j[1]] = data.ctrl
        k_j[1] += 1

    env.controller.apply = recording_apply
    env.reset(seed=0)
    for k, a in enumerate(actions):
        k_j[:] = [k, 0]
        env.step(a)
    del env.controller.apply  # back to the class method

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    raw = mujoco.MjData(m)
    renderer = mujoco.Renderer(m, image_size, image_size)
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = cfg.shadows
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = cfg.reflections
    env_s, raw_s = np.zeros((repeats, steps)), np.zeros((repeats, steps))
    for r in range(repeats):
        env.reset(seed=0)
        state0 = np.zeros(mujoco.mj_stateSize(m, spec))
        mujoco.mj_getState(m, env.data, state0, spec)
        mujoco.mj_setState(m, raw, state0, spec)
        mujoco.mj_forward(m, raw)
        for cam in ("agentview", "wrist"):  # warm-up, as the env's reset did
            renderer.update_scene(raw, camera=cam)
            renderer.render()
        # env step k and baseline step k alternate, so load from other processes hits both alike
        for k, a in enumerate(actions):
            t0 = time.perf_counter()
            env.step(a)
            t1 = time.perf_counter()
            for j in range(cfg.n_substeps):
                raw.ctrl[:] = ctrls[k, j]
                mujoco.mj_step(m, raw)
            for cam in ("agentview", "wrist"):
                renderer.update_scene(raw, camera=cam)
                renderer.render()
            env_s[r, k] = t1 - t0
            raw_s[r, k] = time.perf_counter() - t1
    same = bool(np.array_equal(raw.qpos, env.data.qpos))
    renderer.close()
    env.close()
    # per step, the fastest of the repeats: a load spike from another process spoils one sample, not a sum
    env_rate, raw_rate = steps / env_s.min(axis=0).sum(), steps / raw_s.min(axis=0).sum()
    return {
        "env_steps_per_s": env_rate,
        "env_ms_per_step": 1000 / env_rate,
        "raw_mujoco_steps_per_s": raw_rate,
        "raw_ms_per_step": 1000 / raw_rate,
        "overhead_vs_raw_mujoco": raw_rate / env_rate,
        "overhead_ms_per_step": 1000 / env_rate - 1000 / raw_rate,
        "baseline_trajectory_identical": same,
    }


def expert_success(task: str, seeds: int = 50, noise: float = 0.0, split: str = "train") -> dict[str, float]:
    """Expert success rate over seeds 0..seeds-1 (16 px images: physics does not depend on rendering)."""
    env = make(task, image_size=16, split=split)
    expert = make_expert(task, env, noise=noise, seed=0)
    wins, lengths, failed = 0, [], []
    t0 = time.perf_counter()
    for seed in range(seeds):
        expert.reset()
        obs, info = env.reset(seed=seed)
        done, n = False, 0
        while not done:
            obs, _, term, trunc, info = env.step(expert(obs))
            done, n = term or trunc, n + 1
        wins += bool(info["success"])
        lengths.append(n)
        if not info["success"]:
            failed.append(seed)
    env.close()
    return {
        "success_rate": wins / seeds,
        "successes": wins,
        "seeds": seeds,
        "mean_length": float(np.mean(lengths)),
        "max_length": int(np.max(lengths)),
        "horizon": env.config.horizon,
        "failed_seeds": failed,
        "seconds": time.perf_counter() - t0,
    }
