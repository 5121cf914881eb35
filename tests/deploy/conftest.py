"""Fixtures for deploy tests: a bridge around a KinematicRobot served from a thread, on a free port."""

from __future__ import annotations

import pytest

from deploy.bridge import BridgeConfig, BridgeServer
from deploy.robot import KinematicRobot


@pytest.fixture
def make_bridge():
    servers = []

    def make(robot=None, **cfg):
        cfg.setdefault("bind", "tcp://127.0.0.1:*")
        server = BridgeServer(robot or KinematicRobot(image_size=32), BridgeConfig(**cfg)).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()
