"""The torch backend of the runtime interface (`vla.runtime.Runtime`): a checkpoint run by `VLAPolicy`.

    rt = TorchRuntime.from_checkpoint("runs/x/checkpoint", device="cpu", mode=None)
    chunk = rt.infer(obs)              # ActionChunk(actions float32 [H, 7], valid, ids [n] (bins) or None)
    rt.infer(obs, prefix_ids=p)        # p int64 [k]: the first k action tokens forced (supports_prefix)
    rt.predict_action(obs)             # [H, 7]; rt.last_timings = {"prepare_ms", "decode_ms", "postprocess_ms"}

The observation transforms are the checkpoint's `PolicyIO` (numpy), exactly as the ONNX Runtime and
TensorRT runtimes use them; decoding is `vla.model.decoding` (KV-cached greedy loop, or parallel).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla.config import DECODING_MODES
from vla.model.decoding import decode, to_tensors
from vla.model.policy import VLAPolicy
from vla.policy_io import ActionChunk, PolicyIO
from vla.runtime import Runtime


class TorchRuntime(Runtime):
    supports_prefix = True  # prefix_ids reach `vla.model.decoding.decode` (validated there)

    def __init__(self, policy: VLAPolicy, io: PolicyIO, mode: str | None = None) -> None:
        super().__init__()
        if mode is not None and mode not in DECODING_MODES:
            raise ValueError(f"mode={mode!r}: expected one of {DECODING_MODES} (or None: the checkpoint's)")
        self.policy, self.io, self.mode = policy, io, mode
        self.cfg = io.cfg
        self.execute_steps = io.cfg.action.execute_steps

    @classmethod
    def from_checkpoint(cls, directory: str | Path, device: str = "cpu", mode: str | None = None) -> TorchRuntime:
        if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
            raise ValueError(f"device={device!r}: torch has no such device here (cpu, or cuda[:N] with a GPU)")
        return cls(VLAPolicy.from_pretrained(directory, map_location=device), PolicyIO.load(directory), mode)

    @property
    def device(self) -> torch.device:
        return self.policy.action_slots.device

    def infer_batch(self, observations: Sequence[dict[str, Any]], prefix_ids: Any = None) -> ActionChunk:
        t0 = time.perf_counter()
        prefix = self.check_prefix(prefix_ids)  # numpy [B, k] or None
        feeds = to_tensors(self.io.inputs(observations), self.device)
        forced = None if prefix is None else torch.from_numpy(np.ascontiguousarray(prefix)).to(self.device)
        t1 = time.perf_counter()
        was_training = self.policy.training
        self.policy.eval()
        try:
            with torch.inference_mode():
                ids = decode(self.policy, feeds, mode=self.mode, prefix_ids=forced)
        finally:
            self.policy.train(was_training)
        t2 = time.perf_counter()
        out = self.io.outputs(ids.cpu().numpy())
        self.last_timings = {"prepare_ms": (t1 - t0) * 1e3, "decode_ms": (t2 - t1) * 1e3,
                             "postprocess_ms": (time.perf_counter() - t2) * 1e3}
        return out
