"""Shared pytest setup: headless MuJoCo rendering and a fixed hypothesis profile for CI."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis is a dev extra; tests that need it import it themselves
    pass
