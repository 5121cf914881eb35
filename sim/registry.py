"""Task registry: `make(name, **overrides)`, `list_tasks()`, `make_expert(name, env)` and gymnasium ids.

Each task module calls `register_task(name, default_config, env_cls, expert_cls)` at import;
`sim/tasks/__init__.py` imports them all. Every task is also registered with gymnasium as
`vla_sim/<Name>-v0`, so `gymnasium.make("vla_sim/PickCube-v0", image_size=224)` works too.

    env = sim.make("PickCube", split="heldout", image_size=224)
    expert = sim.make_expert("PickCube", env, noise=0.005)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym

from sim.env import TabletopEnv, TaskConfig
from sim.expert import WaypointExpert

GYM_NAMESPACE = "vla_sim"


@dataclass(frozen=True)
class TaskEntry:
    name: str
    default_config: Callable[[], TaskConfig]
    env_cls: type[TabletopEnv]
    expert_cls: type[WaypointExpert]
    success_rule: str  # one line for the README table


_TASKS: dict[str, TaskEntry] = {}


def register_task(
    name: str,
    default_config: Callable[[], TaskConfig],
    env_cls: type[TabletopEnv],
    expert_cls: type[WaypointExpert],
    success_rule: str,
) -> None:
    if name in _TASKS:
        raise ValueError(f"task {name!r} is already registered")
    _TASKS[name] = TaskEntry(name, default_config, env_cls, expert_cls, success_rule)
    gym_id = f"{GYM_NAMESPACE}/{name}-v0"
    if gym_id not in gym.registry:
        gym.register(id=gym_id, entry_point=_gym_entry_point(name), disable_env_checker=False)


def _gym_entry_point(name: str) -> Callable[..., TabletopEnv]:
    def entry(**kwargs) -> TabletopEnv:
        return make(name, **kwargs)

    return entry


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def task_entry(name: str) -> TaskEntry:
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(list_tasks())}")
    return _TASKS[name]


def make_config(name: str, **overrides) -> TaskConfig:
    """The task's default config with field overrides; unknown fields raise ValueError."""
    cfg = task_entry(name).default_config()
    fields = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for task {name!r}; config fields: {sorted(fields)}")
    return dataclasses.replace(cfg, **overrides)


def make(name: str, render_mode: str | None = "rgb_array", **overrides) -> TabletopEnv:
    """Build task `name` with config overrides (e.g. split="heldout", image_size=224, horizon=50)."""
    entry = task_entry(name)
    return entry.env_cls(make_config(name, **overrides), render_mode=render_mode)


def make_expert(name: str, env: gym.Env, noise: float = 0.0, seed: int | None = None) -> WaypointExpert:
    """Scripted expert for task `name` acting on `env` (a sim env, possibly wrapped)."""
    entry = task_entry(name)
    if not isinstance(env.unwrapped, entry.env_cls):
        raise ValueError(
            f"env is a {type(env.unwrapped).__name__}, expected {entry.env_cls.__name__} for {name!r}"
        )
    return entry.expert_cls(env, noise=noise, seed=seed)
