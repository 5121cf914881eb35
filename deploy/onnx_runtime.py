"""ONNX Runtime backend: run an export directory (`vla export onnx`) through the `Runtime` interface.

    rt = OnnxRuntime("exports/x")                      # CPU EP; CUDA EP first when onnxruntime-gpu has it
    rt = OnnxRuntime("exports/x", mode="parallel")      # override the policy's decoding mode
    chunk = rt.predict_action(obs)                      # float32 [H, 7], same result as VLAPolicy.predict_action
    rt.last_timings                                     # {"prepare_ms", "encoder_ms", "decode_ms", "postprocess_ms"}

`GraphRuntime` holds the backend-independent part (shared with `deploy.tensorrt_runtime`): the model's own
transforms through `PolicyIO`, and the greedy decoding loop over the graphs of `deploy.export.graphs`
(prefill + decode steps with the fixed-capacity KV cache, or one parallel pass). A backend only supplies
`_run(graph, feeds) -> outputs`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deploy.export.onnx_export import load_manifest
from deploy.runtime import Runtime, as_chunk
from vla.model.policy import VLAPolicy


class PolicyIO:
    """`VLAPolicy`'s input/output transforms without its weights.

    The methods *are* VLAPolicy's functions (image resize + normalize, prompt build + tokenize + pad, state
    normalization, action-token decode + unnormalize), bound to this weightless object that carries the
    attributes they read, so a runtime can never drift from what training and `predict_action` do.
    """

    prompt_ids = VLAPolicy.prompt_ids
    encode_prompts = VLAPolicy.encode_prompts
    normalize_state = VLAPolicy.normalize_state
    pixels = VLAPolicy.pixels
    prepare_observations = VLAPolicy.prepare_observations
    ids_to_actions = VLAPolicy.ids_to_actions
    set_normalizers = VLAPolicy.set_normalizers
    _normalizer = VLAPolicy._normalizer
    eos_id = VLAPolicy.eos_id
    num_action_tokens = VLAPolicy.num_action_tokens

    def __init__(self, cfg: Any, text_tokenizer: Any, action_tokenizer: Any, normalizers: dict[str, Any]) -> None:
        self.cfg = cfg
        self.text_tokenizer = text_tokenizer
        self.action_tokenizer = action_tokenizer
        self.normalizers: dict[str, Any] = {}
        self._prompt_cache: dict[str, list[int]] = {}
        self.invalid_chunks = 0
        self.action_slots = torch.empty(0)  # prepare_observations puts tensors on this tensor's device
        self.set_normalizers(normalizers["action"], normalizers.get("observation.state"))

    @classmethod
    def load(cls, directory: str | Path) -> PolicyIO:
        """From a (weightless) checkpoint dir: config.json, tokenizer files, norm_stats.json."""
        import json

        from vla.model.config import VLAConfig
        from vla.model.policy import CONFIG_FORMAT
        from vla.model.text import TextTokenizer
        from vla.normalization import load_norm_stats
        from vla.tokenizers import tokenizer_from_config

        directory = Path(directory)
        meta = json.loads((directory / "config.json").read_text())
        if meta.get("format") != CONFIG_FORMAT:
            raise ValueError(f"{directory}/config.json: format {meta.get('format')!r}, expected {CONFIG_FORMAT!r}")
        cfg = VLAConfig.from_dict(meta["policy"])
        if not meta.get("action_tokenizer"):
            raise ValueError(f"{directory}/config.json has no fitted action tokenizer")
        text = TextTokenizer.load(directory, cfg.text.kind, int(meta["text_vocab_size"]))
        return cls(cfg, text, tokenizer_from_config(meta["action_tokenizer"]),
                   load_norm_stats(directory / "norm_stats.json"))


class GraphRuntime(Runtime):
    """Decoding over exported graphs; subclasses implement `_run` for their backend."""

    def __init__(self, export_dir: str | Path, mode: str | None = None) -> None:
        self.export_dir = Path(export_dir)
        self.manifest = load_manifest(self.export_dir)
        self.io = PolicyIO.load(self.export_dir / self.manifest["tokenizer"]["dir"])
        self.mode = mode or self.manifest["decoding"]
        if self.mode not in ("autoregressive", "parallel"):
            raise ValueError(f"mode={self.mode!r}: expected autoregressive or parallel")
        if self.mode == "parallel" and "parallel" not in self.manifest["graphs"]:
            raise ValueError(f"{self.export_dir} has no parallel graph (FAST tokens decode autoregressively only)")
        self.last_timings: dict[str, float] = {}

    @property
    def cfg(self) -> Any:
        """The policy's `VLAConfig` (so code written against VLAPolicy, e.g. `vla.evaluation`, takes a runtime)."""
        return self.io.cfg

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def encode(self, inputs: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        feeds = {i["name"]: inputs[i["name"]].cpu().numpy() for i in self.manifest["graphs"]["encoder"]["inputs"]}
        out = self._run("encoder", feeds)
        return out["prefix_embeds"], out["prefix_mask"]  # [B, L, D], bool [B, L]

    def decode_ids(self, inputs: dict[str, torch.Tensor], mode: str | None = None,
                   return_logits: bool = False) -> Any:
        """Greedy action ids [B, n] (FAST: list rows, may stop early); with logits [B, n', A] when asked."""
        mode = mode or self.mode
        t0 = time.perf_counter()
        prefix, valid = self.encode(inputs)
        t1 = time.perf_counter()
        if mode == "parallel":
            out = self._run("parallel", {"prefix_embeds": prefix, "prefix_mask": valid})
            ids, logits = out["action_ids"], out["action_logits"]
        else:
            ids, logits = self._autoregressive(prefix, valid)
        self.last_timings.update(encoder_ms=(t1 - t0) * 1e3, decode_ms=(time.perf_counter() - t1) * 1e3)
        return (ids, logits) if return_logits else ids

    def _autoregressive(self, prefix: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prefill once, then one decode step per token, mirroring `vla.model.decoding.decode_autoregressive`."""
        seq = self.manifest["sequence"]
        b, L = valid.shape
        n, eos = seq["action_tokens"], seq["eos_id"]
        out = self._run("prefill", {"prefix_embeds": prefix, "prefix_mask": valid})
        cache_k, cache_v, pos = out["cache_k"], out["cache_v"], out["next_position"]
        kv_mask = np.zeros((b, seq["cache_capacity"]), dtype=bool)
        kv_mask[:, :L] = valid
        tok, step_logits = out["next_ids"], [out["logits"]]
        done = np.zeros(b, dtype=bool) if eos is not None else None
        tokens = []
        for i in range(n):
            if done is not None:
                tok = np.where(done, eos, tok)  # rows that ended keep emitting EOS
            tokens.append(tok)
            if done is not None:
                done = done | (tok == eos)
                if bool(done.all()):
                    break
            if i == n - 1:
                break
            kv_mask[:, L + i] = True  # the slot this step writes
            out = self._run("decode_step", {
                "token_ids": tok.astype(np.int64), "position_ids": (pos + i).astype(np.int64),
                "write_index": np.array([L + i], dtype=np.int64), "kv_mask": kv_mask,
                "cache_k": cache_k, "cache_v": cache_v})
            cache_k, cache_v, tok = out["cache_k_out"], out["cache_v_out"], out["next_ids"]
            step_logits.append(out["logits"])
        return np.stack(tokens, 1), np.stack(step_logits[: len(tokens)], 1)  # [B, n'], [B, n', A]

    def predict_action_batch(self, observations: Sequence[dict], mode: str | None = None) -> np.ndarray:
        """Observation dicts -> float32 [B, H, 7] in robot units (NaN rows: chunk failed to decode)."""
        t0 = time.perf_counter()
        inputs = self.io.prepare_observations(observations)
        t1 = time.perf_counter()
        ids = self.decode_ids(inputs, mode=mode)
        t2 = time.perf_counter()
        ids = torch.from_numpy(ids) if self.io.eos_id is None else ids.tolist()
        acts = self.io.ids_to_actions(ids)
        self.last_timings.update(prepare_ms=(t1 - t0) * 1e3, postprocess_ms=(time.perf_counter() - t2) * 1e3)
        return acts

    def predict_action(self, obs: dict[str, Any], mode: str | None = None) -> np.ndarray:
        return as_chunk(self.predict_action_batch([obs], mode=mode)[0], type(self).__name__)


class OnnxRuntime(GraphRuntime):
    """ONNX Runtime sessions, created on first use of each graph."""

    def __init__(self, export_dir: str | Path, mode: str | None = None, providers: Sequence[str] | None = None,
                 threads: int = 0) -> None:
        import onnxruntime as ort

        super().__init__(export_dir, mode)
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        missing = [p for p in providers if p not in available]
        if missing:
            raise ValueError(f"ONNX Runtime providers {missing} are not available (have {available})")
        self.providers = list(providers)
        self.threads = int(threads)
        self._sessions: dict[str, Any] = {}

    def session(self, graph: str) -> Any:
        if graph not in self._sessions:
            import onnxruntime as ort

            if graph not in self.manifest["graphs"]:
                raise ValueError(f"{self.export_dir} has no {graph!r} graph (has {sorted(self.manifest['graphs'])})")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads  # 0 = ORT's default (all cores)
            opts.log_severity_level = 3
            path = self.export_dir / self.manifest["graphs"][graph]["file"]
            self._sessions[graph] = ort.InferenceSession(str(path), opts, providers=self.providers)
        return self._sessions[graph]

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = self.session(graph)
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds), strict=True))
