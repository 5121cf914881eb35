"""Decoding over exported graphs, whatever executes them (numpy; no torch): the part ONNX Runtime and
TensorRT runtimes share. A backend only supplies `run(graph, feeds) -> outputs`.

    rt = OnnxRuntime("exports/x")                 # deploy.runtimes.onnx (or TensorRTRuntime)
    chunk = rt.infer(obs)                          # ActionChunk, the same actions as the torch runtime
    ids, logits = rt.decode_ids(feeds, return_logits=True)   # greedy ids [B, n] and action-block logits
    ids = rt.decode_ids(feeds, prefix_ids=p)       # p int64 [B, k]: the first k ids forced

The transforms are the export's `PolicyIO` (its weightless `policy/` checkpoint); the greedy loop is
`vla.greedy.greedy`, the one the torch KV-cache loop runs: prefill once, then one decode step per token
over the fixed-capacity KV cache (graphs of `deploy.export.graphs`), or one parallel pass.

Prefix forcing (`prefix_ids`, as `vla.model.decoding` does it): autoregressively the forced ids go through
the same `decode_step` graph (it takes the slot's `token_ids` as input, so the export needs nothing new) and
the rest continue from them; in parallel mode they are forced slots: the first k ids replaced, and, for an
export trained with `action.prefix_conditioning` (manifest `sequence.prefix_conditioning` > 0), given to the
parallel graph (`slot_ids`, `slot_given`) so the rest conditions on them; otherwise the rest is the unforced
prediction. The returned logits are always the ones the graphs computed.

The KV cache stays on the device between decode steps where the backend can keep it (`run_device`):
TensorRT (torch CUDA tensors) and ONNX Runtime with IO binding (`OnnxRuntime(device_cache=True)`, the
default on its CUDA provider); only the logits, ids and positions of each step cross to the host.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy.manifest import load_manifest, policy_dir
from vla.config import DECODING_MODES
from vla.greedy import check_prefix, greedy
from vla.policy_io import ActionChunk, PolicyIO
from vla.runtime import Runtime


class GraphRuntime(Runtime):
    """Decoding over exported graphs; subclasses implement `run` for their backend."""

    supports_prefix = True

    def __init__(self, export_dir: str | Path, mode: str | None = None) -> None:
        super().__init__()
        self.export_dir = Path(export_dir)
        self.manifest = load_manifest(self.export_dir)
        self.io = PolicyIO.load(policy_dir(self.export_dir, self.manifest))
        self.cfg = self.io.cfg
        self.execute_steps = self.cfg.action.execute_steps
        self.mode = mode or self.manifest["decoding"]
        if self.mode not in DECODING_MODES:
            raise ValueError(f"mode={self.mode!r}: expected one of {DECODING_MODES}")
        if self.mode == "parallel" and "parallel" not in self.manifest["graphs"]:
            raise ValueError(f"{self.export_dir} has no parallel graph (FAST tokens and converted checkpoints decode "
                             "autoregressively only)")

    @property
    def score_start(self) -> int:
        """The vocabulary id of the graphs' logit column 0 (exports before `score_id_start`: the action block)."""
        seq = self.manifest["sequence"]
        return int(seq.get("score_id_start", seq["action_id_start"]))

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def run_device(self, graph: str, feeds: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
        """`run`, but the outputs named in `keep` may stay where the backend computed them (a GPU) as opaque
        handles, and feeds may be such handles: the decode loop passes the KV cache from step to step this
        way, so it never crosses to the host. This default keeps everything on the host."""
        return self.run(graph, feeds)

    def encoder_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {i["name"]: feeds[i["name"]] for i in self.manifest["graphs"]["encoder"]["inputs"]}

    def encode(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """-> prefix_embeds [B, L, D], prefix_mask bool [B, L], the fusion context {name: array} the decoder
        graphs take after their own inputs (the manifest's `sequence.context`: none for early fusion)."""
        out = self.run("encoder", self.encoder_feeds(feeds))
        ctx = {k: out[k] for k in self.manifest["sequence"].get("context", ())}
        return out["prefix_embeds"], out["prefix_mask"], ctx

    def forced_ids(self, prefix_ids: Any, batch: int) -> np.ndarray | None:
        """prefix_ids validated against the manifest's `sequence` (`vla.greedy.check_prefix`) as int64 [B, k];
        None if absent or k = 0."""
        if prefix_ids is None:
            return None
        seq = self.manifest["sequence"]
        lo = seq["action_id_start"]
        ids = np.asarray(prefix_ids)
        k = check_prefix(ids, batch, seq["action_tokens"], lo, lo + seq["action_id_count"])
        return ids.astype(np.int64) if k else None

    def parallel_feeds(self, prefix: np.ndarray, valid: np.ndarray, ctx: dict[str, np.ndarray],
                       forced: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The parallel graph's feeds; a graph exported with prefix conditioning also takes the forced prefix
        (slot_ids [B, n], slot_given [B, n]: the first k slots given, none without `forced` [B, k])."""
        feeds = {"prefix_embeds": prefix, "prefix_mask": valid, **ctx}
        seq = self.manifest["sequence"]
        if seq.get("prefix_conditioning", 0.0) > 0:
            b, n = valid.shape[0], seq["action_tokens"]
            ids = np.full((b, n), seq["action_id_start"], dtype=np.int64)
            given = np.zeros((b, n), dtype=bool)
            if forced is not None:
                ids[:, : forced.shape[1]] = forced
                given[:, : forced.shape[1]] = True
            feeds.update(slot_ids=ids, slot_given=given)
        return feeds

    def decode_ids(self, feeds: dict[str, np.ndarray], mode: str | None = None,
                   return_logits: bool = False, prefix_ids: Any = None) -> Any:
        """Greedy action ids [B, n'] (FAST may stop early); with the action-block logits [B, n', A] when asked.

        prefix_ids [B, k]: the first k ids forced (autoregressive: decoding continues from them; parallel:
        forced slots)."""
        mode = mode or self.mode
        forced = self.forced_ids(prefix_ids, len(feeds["prompt_ids"]))
        t0 = time.perf_counter()
        prefix, valid, ctx = self.encode(feeds)
        t1 = time.perf_counter()
        if mode == "parallel":
            out = self.run("parallel", self.parallel_feeds(prefix, valid, ctx, forced))
            logits = out["action_logits"]  # [B, n, A]
            ids = logits.argmax(-1) + self.score_start
            if forced is not None:
                ids[:, : forced.shape[1]] = forced  # forced slots; the tail is the unforced prediction
        else:
            ids, logits = self._autoregressive(prefix, valid, forced, ctx)
        self.last_timings.update(encoder_ms=(t1 - t0) * 1e3, decode_ms=(time.perf_counter() - t1) * 1e3)
        return (ids, logits) if return_logits else ids

    def _autoregressive(self, prefix: np.ndarray, valid: np.ndarray, forced: np.ndarray | None = None,
                        ctx: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Prefill once, then one decode step per token, through the shared greedy loop (forced ids [B, k]
        are stepped like decoded ones)."""
        seq = self.manifest["sequence"]
        b, L = valid.shape
        ctx = ctx or {}  # the observation's fusion context, fed to every decoder graph
        out = self.run_device("prefill", {"prefix_embeds": prefix, "prefix_mask": valid, **ctx}, keep=("cache_k", "cache_v"))
        cache = {"cache_k": out["cache_k"], "cache_v": out["cache_v"]}  # device handles where the backend keeps them
        pos = out["next_position"]
        kv_mask = np.zeros((b, seq["cache_capacity"]), dtype=bool)
        kv_mask[:, :L] = valid
        logits = [out["logits"]]  # [B, A] per slot

        def step(tok: np.ndarray, i: int) -> np.ndarray:
            kv_mask[:, L + i] = True  # the slot this step writes
            o = self.run_device("decode_step", {
                "token_ids": tok.astype(np.int64), "position_ids": (pos + i).astype(np.int64),
                "write_index": np.array([L + i], dtype=np.int64), "kv_mask": kv_mask, **cache, **ctx},
                keep=("cache_k_out", "cache_v_out"))
            cache.update(cache_k=o["cache_k_out"], cache_v=o["cache_v_out"])
            logits.append(o["logits"])
            return o["logits"]

        ids = greedy(out["logits"], step, seq["action_tokens"], self.score_start, seq["eos_id"], xp=np,
                     forced=forced)
        return ids, np.stack(logits[: ids.shape[1]], 1)  # [B, n'], [B, n', A]

    def infer_batch(self, observations: Sequence[dict[str, Any]], prefix_ids: Any = None) -> ActionChunk:
        t0 = time.perf_counter()
        prefix = self.check_prefix(prefix_ids)
        feeds = self.io.inputs(observations)
        t1 = time.perf_counter()
        ids = self.decode_ids(feeds, prefix_ids=prefix)
        t2 = time.perf_counter()
        out = self.io.outputs(ids)
        self.last_timings.update(prepare_ms=(t1 - t0) * 1e3, postprocess_ms=(time.perf_counter() - t2) * 1e3)
        return out
