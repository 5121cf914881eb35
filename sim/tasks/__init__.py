"""Task modules; importing this package registers every task (see sim.registry)."""

from sim.tasks import pick, place, push, reach, stack  # noqa: F401
