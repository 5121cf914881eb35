"""INT8 calibration inputs for `deploy.export.tensorrt_build.build_engines`, computed by the caller (the
exporter never imports a runtime): observations from a LeRobot dataset, run through the fp32 ONNX graphs.

    obs = dataset_observations("data/pick", cameras=["agentview", "wrist"], n=64)
    feeds = calibration_feeds(OnnxRuntime("exports/x", providers=["CPUExecutionProvider"]), obs)
    build_engines("exports/x", "engines/x", EngineBuildConfig(precision="int8"), calibration=feeds)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from deploy.runtimes.graph import GraphRuntime


def dataset_observations(root: str | os.PathLike, cameras: list[str], n: int) -> list[dict[str, Any]]:
    """`n` frames spread over a LeRobot dataset, as the observation dicts the runtimes take."""
    from vla.data import LeRobotDataset

    ds = LeRobotDataset(root)
    obs = []
    for i in np.linspace(0, len(ds) - 1, num=min(n, len(ds))).astype(int):
        f = ds[int(i)]
        o = {c: np.asarray(f[f"observation.images.{c}"], dtype=np.uint8) for c in cameras}
        o.update(state=np.asarray(f["observation.state"], dtype=np.float32), instruction=f["task"])
        obs.append(o)
    return obs


def calibration_feeds(rt: GraphRuntime, observations: list[dict[str, Any]]) -> dict[str, list[dict[str, np.ndarray]]]:
    """Per-graph input batches: the encoder's from the model's transforms, the decoders' from running the
    fp32 graphs of `rt` on the same observations."""
    seq = rt.manifest["sequence"]
    feeds: dict[str, list[dict[str, np.ndarray]]] = {g: [] for g in rt.manifest["graphs"]}
    for o in observations:
        inputs = rt.io.inputs([o])
        feeds["encoder"].append(rt.encoder_feeds(inputs))
        prefix, valid, ctx = rt.encode(inputs)  # ctx: the fusion context every decoder graph takes too
        if "parallel" in feeds:
            feeds["parallel"].append(rt.parallel_feeds(prefix, valid, ctx))
        feeds["prefill"].append({"prefix_embeds": prefix, "prefix_mask": valid, **ctx})
        out = rt.run("prefill", {"prefix_embeds": prefix, "prefix_mask": valid, **ctx})
        L = valid.shape[1]
        kv = np.zeros((1, seq["cache_capacity"]), dtype=bool)
        kv[:, : L + 1] = np.concatenate([valid, [[True]]], 1)
        feeds["decode_step"].append({"token_ids": out["next_ids"], "position_ids": out["next_position"],
                                     "write_index": np.array([L], dtype=np.int64), "kv_mask": kv,
                                     "cache_k": out["cache_k"], "cache_v": out["cache_v"], **ctx})
    return feeds
