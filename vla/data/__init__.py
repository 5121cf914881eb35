"""LeRobot-format datasets: `LeRobotDatasetWriter` (v3.0, atomic per episode) and `LeRobotDataset` (v3.0/v2.1).

    from vla.data import LeRobotDataset, LeRobotDatasetWriter
    with LeRobotDatasetWriter(root, fps=10, robot_type="franka_panda", features=FEATURES) as w:
        w.add_frame(frame, task="pick up the red cube"); w.save_episode()
    ds = LeRobotDataset(root); ds[0]["action"], ds.stats["action"]["q99"]

See `vla.data.format` for the on-disk layout.
"""

from vla.data.reader import LeRobotDataset
from vla.data.writer import LeRobotDatasetWriter

__all__ = ["LeRobotDataset", "LeRobotDatasetWriter"]
