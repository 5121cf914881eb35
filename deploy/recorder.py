"""EpisodeRecorder: the bridge's LeRobot recording of (observation, executed action, instruction).

    rec = EpisodeRecorder("runs/demos", fps=10, robot=robot)    # creates (or resumes) the dataset
    rec.add(obs_before, executed_action)                         # one frame per executed control step
    rec.end_episode()                                            # save_episode -> episode index (None if empty)
    rec.close()

Features are built from the robot: one `observation.images.<camera>` (dtype image) per camera,
`observation.state` and `action` with the robot's state/action names. Frames store the observation
the action was chosen from and the action the robot really executed (after safety clamps, or the
hold command), so a dataset recorded through teleop holds what the arm did, not what was asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deploy.robot import Observation, Robot


def features_for(robot: Robot, obs: Observation) -> dict[str, dict[str, Any]]:
    feats: dict[str, dict[str, Any]] = {}
    for cam, img in obs.images.items():
        feats[f"observation.images.{cam}"] = {"dtype": "image", "shape": list(img.shape),
                                              "names": ["height", "width", "channel"]}
    feats["observation.state"] = {"dtype": "float32", "shape": [len(robot.state_names)],
                                  "names": list(robot.state_names)}
    feats["action"] = {"dtype": "float32", "shape": [len(robot.action_names)], "names": list(robot.action_names)}
    return feats


class EpisodeRecorder:
    def __init__(self, root: str | Path, fps: int, robot: Robot, robot_type: str = "franka_panda",
                 resume: bool = True) -> None:
        from vla.data import LeRobotDatasetWriter

        self.root = Path(root)
        resume = resume and (self.root / "meta" / "info.json").exists()
        self.writer = LeRobotDatasetWriter(self.root, fps=int(fps), robot_type=robot_type,
                                           features=features_for(robot, robot.observe()), resume=resume)
        self.episodes_saved: list[int] = []

    @property
    def num_buffered_frames(self) -> int:
        return self.writer.num_buffered_frames

    def add(self, obs: Observation, action: np.ndarray) -> None:
        frame = {f"observation.images.{cam}": img for cam, img in obs.images.items()}
        frame["observation.state"] = np.asarray(obs.state, dtype=np.float32)
        frame["action"] = np.asarray(action, dtype=np.float32)
        self.writer.add_frame(frame, task=obs.instruction)

    def end_episode(self) -> int | None:
        """Persist the buffered frames as one episode; None (and nothing written) when empty."""
        if self.writer.num_buffered_frames == 0:
            return None
        ep = self.writer.save_episode()
        self.episodes_saved.append(ep)
        return ep

    def close(self) -> None:
        self.end_episode()
        self.writer.close()
