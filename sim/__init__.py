"""MuJoCo tabletop manipulation tasks with a Franka Panda, as language-conditioned gymnasium envs.

    import sim
    sim.list_tasks()                      # ['PickCube', 'PlaceCube', 'PushCube', 'ReachCube', 'StackCube']
    env = sim.make("PickCube", split="heldout", image_size=128)
    expert = sim.make_expert("PickCube", env, noise=0.005)
    result = sim.run_episode(env, expert, seed=0)
    sim.write_video("pick.mp4", result.frames, fps=env.metadata["render_fps"])
    # or: gymnasium.make("vla_sim/PickCube-v0")

Action float32 [7] = [dx, dy, dz, drx, dry, drz, gripper] (m, axis-angle rad, base frame; gripper -1
open, +1 closed) at 10 Hz; observation {"agentview", "wrist": uint8 [H, W, 3], "state": float32 [8],
"instruction": str}; info["success"]. See sim/env.py. This package imports nothing of `vla` or `deploy`.
"""

import os

# Before anything imports mujoco: headless offscreen rendering through EGL (GPU or CPU Mesa) unless
# the user chose a backend.
os.environ.setdefault("MUJOCO_GL", "egl")

from sim import tasks as _tasks  # noqa: E402,F401  (registers every task)
from sim.env import ACTION_NAMES, STATE_NAMES, TASK_STATE_NAMES, TabletopEnv, TaskConfig  # noqa: E402
from sim.registry import list_tasks, make, make_config, make_expert, task_entry  # noqa: E402
from sim.runner import EpisodeResult, Policy, run_episode, write_video  # noqa: E402

__all__ = [
    "ACTION_NAMES",
    "STATE_NAMES",
    "TASK_STATE_NAMES",
    "EpisodeResult",
    "Policy",
    "TabletopEnv",
    "TaskConfig",
    "list_tasks",
    "make",
    "make_config",
    "make_expert",
    "run_episode",
    "task_entry",
    "write_video",
]
