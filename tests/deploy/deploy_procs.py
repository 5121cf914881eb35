"""Process targets for the deploy fault tests (spawned children import this module by name)."""

from __future__ import annotations

import numpy as np

from deploy.bridge import BridgeClient, BridgeConfig, BridgeServer
from deploy.control import ControlConfig, ControlLoop
from deploy.robot import KinematicRobot
from vla.runtime import PolicyRuntime

HZ = 20.0


def endless_robot() -> KinematicRobot:
    """A kinematic robot whose episodes never succeed and last long (tol=0, long horizon)."""
    return KinematicRobot(image_size=32, tol=0.0, horizon=10**6, control_hz=HZ)


def wiggle(obs: dict) -> np.ndarray:
    """A policy that keeps the tcp near home: a small step back towards x=0.45 plus a wiggle."""
    a = np.zeros(7, dtype=np.float32)
    a[0] = 0.002 if obs["state"][0] < 0.45 else -0.002
    a[6] = -1.0
    return a


def run_bridge(queue, lockstep: bool = False) -> None:
    server = BridgeServer(endless_robot(), BridgeConfig(bind="tcp://127.0.0.1:*", lockstep=lockstep))
    queue.put(server.endpoint)
    server.serve_forever()


def run_control(endpoint: str, queue) -> None:
    with BridgeClient(endpoint, timeout_s=1.0) as client:
        loop = ControlLoop(client, PolicyRuntime(wiggle), ControlConfig(hz=HZ, stop_on_success=False))
        queue.put("started")
        loop.run_episode(reset=False)  # runs until killed
