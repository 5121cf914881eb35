"""The policy's transforms as frozen data, shared by training and every runtime (numpy only, no torch).

    io = PolicyIO.load("runs/x/checkpoint")          # or an export's policy/ dir, or PolicyIO.build(...)
    feeds = io.inputs([obs])                         # observation dicts -> numpy feeds of the model graph
    chunk = io.outputs(ids)                          # decoded ids [B, n] -> ActionChunk(actions [B, H, 7], valid [B], ids)
    prefix = io.action_ids(chunk.actions[0, 2:4])    # actions [k, 7] robot units -> their bins ids int64 [k*7]

`inputs` selects the policy's cameras, resizes them to its input size, normalizes per channel, builds the
prompt from the template, tokenizes and left-pads it, and normalizes the proprio state:
    pixel_values float32 [B, C, 3, S, S], prompt_ids int64 [B, T], prompt_mask bool [B, T], state float32 [B, S]
`outputs` decodes action tokens and unnormalizes them into robot units; a chunk that does not decode is
flagged invalid (`valid` False, its actions NaN), never turned into a zero action. `action_ids` maps
actions back to bins ids, the tokens a runtime forces as the prefix of the next chunk (`prefix_ids`).
Training uses the same object for its targets (`targets`) and image normalization (`pixels`), so a
runtime cannot drift from what the policy was trained on. The torch runtime, ONNX Runtime and TensorRT
runtimes all call `inputs`/`outputs`; this module (and everything it imports) never imports torch.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla.config import VLAConfig
from vla.meta import CheckpointMeta, read_meta
from vla.normalization import Normalizer, load_norm_stats
from vla.text import TextTokenizer
from vla.tokenizers import BinActionTokenizer, FastActionTokenizer, tokenizer_from_config

STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"  # privileged task state (sim demos; the aux head)


@dataclass(frozen=True)
class ActionChunk:
    """Actions float32 [..., H, D] in robot units and `valid` bool [...] (False: failed to decode, NaN actions).

    `ids`: the int64 token ids [..., n] the chunk was decoded from (bins tokenizer; None for FAST, whose rows
    vary in length, and for runtimes that decode no tokens)."""

    actions: np.ndarray
    valid: np.ndarray
    ids: np.ndarray | None = None

    def __getitem__(self, i: int) -> ActionChunk:
        return ActionChunk(self.actions[i], np.asarray(self.valid[i]), None if self.ids is None else self.ids[i])

    def __len__(self) -> int:
        return len(self.actions)


def build_action_tokenizer(cfg: VLAConfig, vocab_size: int, saved: dict[str, Any] | None = None) -> Any:
    """The action tokenizer of a policy: from its saved config (fitted FAST), else fresh from `cfg.action`."""
    if saved:
        return tokenizer_from_config(saved)
    a = cfg.action
    if a.tokenizer == "bins":  # ids end at block_end (OpenVLA: inside the text vocabulary) or the vocabulary's end
        return BinActionTokenizer(vocab_size=a.block_end or vocab_size, n_bins=a.n_bins, low=-1.0, high=1.0)
    return FastActionTokenizer(vocab_size=vocab_size, action_dim=a.dim, horizon=a.horizon, n_tokens=a.fast.tokens,
                               scale=a.fast.scale)


def build_prompt(cfg: VLAConfig, text: TextTokenizer, instruction: str) -> list[int]:
    """Token ids of the policy's prompt for `instruction`: the template filled in (lower-cased first with
    `text.lowercase`), BOS first where the tokenizer has one, `text.suffix_ids` last unless the prompt
    already ends with them. With `bos_before_visual` the BOS is left out: the model puts it before the
    visual tokens itself."""
    instruction = instruction.strip()
    if cfg.text.lowercase:
        instruction = instruction.lower()
    ids = text.encode(cfg.prompt_template.format(instruction=instruction))
    suffix = list(cfg.text.suffix_ids)
    if suffix and ids[-len(suffix):] != suffix:
        ids = ids + suffix
    if cfg.bos_before_visual:
        if not ids or ids[0] != text.bos_id:
            raise ValueError(f"bos_before_visual: the prompt does not start with BOS id {text.bos_id}")
        ids = ids[1:]
    return ids


def load_text_tokenizer(directory: str | Path, cfg: VLAConfig, text_vocab_size: int) -> TextTokenizer:
    """The checkpoint's text tokenizer, whatever its kind (`vla.config.TextConfig`)."""
    t = cfg.text
    return TextTokenizer.load(directory, t.kind, text_vocab_size, bos_id=t.bos_id, pad_id=t.pad_id)


# ---- image transforms -------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _aa_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] antialiased bilinear (triangle filter) weights, as torch's `interpolate(mode="bilinear",
    antialias=True, align_corners=False)` computes them: the filter widens by the scale when shrinking."""
    scale = n_in / n_out
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    w = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        centre = scale * (i + 0.5)
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), n_in)
        j = np.arange(lo, hi)
        f = np.clip(1.0 - np.abs((j - centre + 0.5) * inv), 0.0, None)
        w[i, lo:hi] = f / f.sum()
    w = w.astype(np.float32)  # cached per size pair: a camera stream resizes every frame the same way
    w.flags.writeable = False
    return w


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [..., H, W, 3] (row 0 = top) -> uint8 [..., size, size, 3], antialiased bilinear, rounded.

    Same-size images are returned as a copy, untouched (the recorded demos and `vla eval` render at the
    policy's size). Other sizes match torch's antialiased bilinear resize to within 1 grey level."""
    x = _check_uint8(images)
    h, w = x.shape[-3:-1]
    if (h, w) == (size, size):
        return x.copy()
    wy, wx = _aa_weights(h, size), _aa_weights(w, size)  # [S, H], [S, W]
    f = x.astype(np.float32)
    f = np.einsum("sw,...hwc->...hsc", wx, f)  # width first
    f = np.einsum("sh,...hwc->...swc", wy, f)
    return np.clip(np.round(f), 0, 255).astype(np.uint8)


def _pil_bicubic(img: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((width, height), resample=Image.Resampling.BICUBIC))


def resize_bicubic(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [..., H, W, 3] -> uint8 [..., size, size, 3] by PIL's bicubic resize: what torchvision's
    `resize(PIL image, (size, size), BICUBIC)` does inside Prismatic's `resize-naive` processor."""
    x = _check_uint8(images)
    if x.shape[-3:-1] == (size, size):
        return x.copy()
    flat = x.reshape(-1, *x.shape[-3:])
    return np.stack([_pil_bicubic(im, size, size) for im in flat]).reshape(*x.shape[:-3], size, size, 3)


def letterbox(images: np.ndarray, size: int, fill: Sequence[int] | None) -> np.ndarray:
    """Prismatic's `letterbox` strategy, as its processor computes it on a PIL image: pad to a square with
    `fill` (int((max - w) / 2) columns left and right, likewise rows, so an odd difference leaves it one
    short), then torchvision's Resize(size) of the shorter side (the longer one int(size * long / short))
    by PIL bicubic, then its centre crop to size x size. fill=None skips the padding (`resize-crop`)."""
    x = _check_uint8(images)
    flat = x.reshape(-1, *x.shape[-3:])
    out = []
    for im in flat:
        h, w = im.shape[:2]
        m = max(h, w)
        cols, rows = (int((m - w) / 2), int((m - h) / 2)) if fill is not None else (0, 0)  # per side
        padded = np.empty((h + 2 * rows, w + 2 * cols, 3), dtype=np.uint8)
        padded[...] = np.asarray(fill if fill is not None else (0, 0, 0), dtype=np.uint8)
        padded[rows:rows + h, cols:cols + w] = im
        h2, w2 = padded.shape[:2]
        if (h2, w2) != (size, size):
            if w2 <= h2:
                nw, nh = size, int(size * h2 / w2)
            else:
                nh, nw = size, int(size * w2 / h2)
            if (nh, nw) != (h2, w2):
                padded = _pil_bicubic(padded, nw, nh)
        h3, w3 = padded.shape[:2]
        top, left = int(round((h3 - size) / 2.0)), int(round((w3 - size) / 2.0))
        out.append(padded[top:top + size, left:left + size])
    return np.stack(out).reshape(*x.shape[:-3], size, size, 3)


def resize_for(vision: Any, images: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] -> [..., S, S, 3] the way `vision` (a `VisionConfig`) says: its `resize` mode."""
    if vision.resize == "bicubic":
        return resize_bicubic(images, vision.image_size)
    if vision.resize in ("letterbox", "resize_crop"):
        return letterbox(images, vision.image_size, vision.letterbox_fill)
    return resize_images(images, vision.image_size)


def _check_uint8(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [..., H, W, 3], got {x.dtype} {x.shape}")
    return x


def normalize_images(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 [..., S, S, 3] or float in [0, 1] [..., 3, S, S] -> normalized float32 [..., 3, S, S]."""
    x = np.asarray(images)
    if x.dtype == np.uint8:
        x = np.moveaxis(x, -1, -3).astype(np.float32) / np.float32(255.0)  # [..., 3, S, S]
    elif x.dtype.kind == "f" and x.ndim >= 3 and x.shape[-3] == 3:
        x = x.astype(np.float32, copy=False)
    else:
        raise ValueError(f"expected uint8 [..., S, S, 3] or float [..., 3, S, S], got {x.dtype} {x.shape}")
    m = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray((x - m) / s)


def pad_prompts(prompts: Sequence[Sequence[int]], prompt_len: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-pad id lists to `prompt_len` -> (ids int64 [B, T], mask bool [B, T]). Too long -> ValueError."""
    ids = np.full((len(prompts), prompt_len), pad_id, dtype=np.int64)
    mask = np.zeros((len(prompts), prompt_len), dtype=bool)
    for i, p in enumerate(prompts):
        if len(p) > prompt_len:
            raise ValueError(f"prompt {i} has {len(p)} tokens, more than TextConfig.prompt_len={prompt_len}; "
                             "raise prompt_len (a converted checkpoint: convert again with --prompt-len)")
        if len(p):
            ids[i, prompt_len - len(p):] = p
            mask[i, prompt_len - len(p):] = True
    return ids, mask


# ---- the transforms of one policy --------------------------------------------------------------

@dataclass(frozen=True)
class PolicyIO:
    """Everything between an observation dict and the model graph, and between token ids and actions."""

    cfg: VLAConfig
    text: TextTokenizer
    action_tokenizer: Any  # vla.tokenizers.ActionTokenizer
    normalizers: Mapping[str, Normalizer]  # "action", STATE_KEY (with a state token), training extras
    _prompts: dict[str, list[int]] = field(default_factory=dict, compare=False, repr=False)  # memo only

    def __post_init__(self) -> None:
        if "action" not in self.normalizers:
            raise ValueError("PolicyIO needs an 'action' normalizer (fit one in training, or load a checkpoint)")
        a = self.normalizers["action"]
        if a.dim != self.cfg.action.dim:
            raise ValueError(f"action normalizer has dim {a.dim}, the policy acts in ActionConfig.dim={self.cfg.action.dim}")
        if self.cfg.use_state:
            s = self.normalizers.get(STATE_KEY)
            if s is None:
                raise ValueError(f"VLAConfig.state_dim={self.cfg.state_dim} needs a {STATE_KEY!r} normalizer")
            if s.dim != self.cfg.state_dim:
                raise ValueError(f"state normalizer has dim {s.dim}, VLAConfig.state_dim={self.cfg.state_dim}")
        object.__setattr__(self, "normalizers", dict(self.normalizers))

    @classmethod
    def load(cls, directory: str | Path, meta: CheckpointMeta | None = None) -> PolicyIO:
        """From a checkpoint dir (or an export's weightless policy/ dir): config.json, tokenizer, norm_stats.json."""
        meta = meta or read_meta(directory)
        directory = Path(directory)
        text = load_text_tokenizer(directory, meta.cfg, meta.text_vocab_size)
        if meta.cfg.action.tokenizer == "fast" and not meta.action_tokenizer:
            raise ValueError(f"{directory}/config.json: the FAST action tokenizer was never fitted (no training)")
        tok = build_action_tokenizer(meta.cfg, meta.vocab_size, meta.action_tokenizer)
        return cls(meta.cfg, text, tok, load_norm_stats(directory / "norm_stats.json"))

    # ---- properties the decoders need ---------------------------------------------------------

    @property
    def num_action_tokens(self) -> int:
        return self.cfg.action.num_action_tokens

    @property
    def eos_id(self) -> int | None:
        """FAST ends a chunk with an end token; bins have a fixed length."""
        return self.action_tokenizer.eos_id if self.cfg.action.tokenizer == "fast" else None

    # ---- inputs -------------------------------------------------------------------------------

    def prompt_ids(self, instruction: str) -> list[int]:
        if instruction not in self._prompts:
            self._prompts[instruction] = build_prompt(self.cfg, self.text, instruction)
        return self._prompts[instruction]

    def prompts(self, instructions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (ids int64 [B, T], mask bool [B, T]) left-padded to TextConfig.prompt_len."""
        return pad_prompts([self.prompt_ids(s) for s in instructions], self.cfg.text.prompt_len, self.text.pad_id)

    def pixels(self, small: np.ndarray) -> np.ndarray:
        """uint8 [B, C, S, S, 3] (already resized) or float01 [B, C, 3, S, S] -> normalized float32
        [B, C, 3, S, S]; with a fused tower [B, C, 6, S, S], the image normalized by each tower's mean/std."""
        v = self.cfg.vision
        x = normalize_images(small, v.image_mean, v.image_std)
        if v.fused is None:
            return x
        return np.concatenate([x, normalize_images(small, v.fused.image_mean, v.fused.image_std)], axis=-3)

    def resize(self, images: np.ndarray) -> np.ndarray:
        return resize_for(self.cfg.vision, images)

    def state(self, states: np.ndarray) -> np.ndarray:
        """Raw proprio [B, S] -> normalized float32 [B, S]."""
        x = np.asarray(states, dtype=np.float64)
        return np.asarray(self.normalizers[STATE_KEY].normalize(x), dtype=np.float32)

    def inputs(self, observations: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Observation dicts (camera name -> uint8 [H, W, 3], "instruction", "state") -> the model's feeds."""
        if not observations:
            raise ValueError("need at least one observation")
        need = (*self.cfg.cameras, "instruction") + (("state",) if self.cfg.use_state else ())
        for i, o in enumerate(observations):
            missing = [k for k in need if k not in o]
            if missing:
                raise ValueError(f"observation {i} is missing {missing} (has {sorted(o)})")
        raw = [[np.asarray(o[c]) for c in self.cfg.cameras] for o in observations]
        if len({im.shape for row in raw for im in row}) == 1:  # one size: resize the batch at once
            small = self.resize(np.stack([np.stack(row) for row in raw]))  # [B, C, S, S, 3]
        else:  # cameras / observations of different sizes: each resized on its own
            small = np.stack([np.stack([self.resize(im) for im in row]) for row in raw])
        ids, mask = self.prompts([str(o["instruction"]) for o in observations])
        feeds = {"pixel_values": self.pixels(small), "prompt_ids": ids, "prompt_mask": mask}
        if self.cfg.use_state:
            feeds["state"] = self.state(np.stack([np.asarray(o["state"]) for o in observations]))
        return feeds

    # ---- targets (training) and outputs ----------------------------------------------------------

    def normalize_actions(self, chunks: np.ndarray) -> np.ndarray:
        """Raw chunks [B, H, D] -> normalized float32."""
        return self.normalizers["action"].normalize(np.asarray(chunks, dtype=np.float64)).astype(np.float32)

    def targets(self, chunks: np.ndarray, step_valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Normalized chunks [B, H, D] -> (target ids int64 [B, n], supervised mask bool [B, n]).

        bins: H*D ids, steps with `step_valid` False (past the episode end) unsupervised.
        fast: the chunk's ids + EOS, right-padded with EOS (unsupervised) to n slots.
        """
        b, h, d = chunks.shape
        if step_valid is None:
            step_valid = np.ones((b, h), dtype=bool)
        n = self.num_action_tokens
        if self.cfg.action.tokenizer == "bins":
            ids = np.asarray(self.action_tokenizer.encode(chunks.astype(np.float32)), dtype=np.int64).reshape(b, n)
            return ids, np.repeat(np.asarray(step_valid, dtype=bool), d, axis=1)
        seqs = self.action_tokenizer.encode(chunks.astype(np.float32), add_eos=True)
        ids = np.full((b, n), self.eos_id, dtype=np.int64)
        mask = np.zeros((b, n), dtype=bool)
        for i, s in enumerate(seqs):
            if len(s) > n:
                raise ValueError(f"FAST chunk needs {len(s)} tokens (incl. EOS) > FastConfig.max_tokens+1={n}")
            ids[i, : len(s)] = s
            mask[i, : len(s)] = True
        return ids, mask

    def outputs(self, ids: np.ndarray | Sequence[Sequence[int]]) -> ActionChunk:
        """Decoded ids (bins: [B, n]; FAST: rows, possibly shorter) -> ActionChunk([B, H, D], valid [B], ids).

        bins: `ids` of the chunk are the given ids as int64 [B, n]; FAST: None."""
        h, d = self.cfg.action.horizon, self.cfg.action.dim
        kept = None
        if self.cfg.action.tokenizer == "bins":
            arr = np.asarray(ids)
            # openvla: the float64 bin centres, then the reference's float64 unnormalization (exact actions)
            exact = self.normalizers["action"].mode == "openvla"
            dec = self.action_tokenizer.decode(arr.reshape(-1, h, d), strict=False,
                                               dtype=np.float64 if exact else np.float32)  # valid [B, H]
            kept = arr.astype(np.int64).reshape(-1, h * d)  # [B, n], a copy the caller cannot mutate
            valid = dec.valid.all(axis=1)
        else:
            dec = self.action_tokenizer.decode([list(map(int, r)) for r in ids], strict=False)  # valid [B]
            valid = np.asarray(dec.valid, dtype=bool)
        acts = np.asarray(self.normalizers["action"].unnormalize(dec.actions.astype(np.float64)), dtype=np.float32)
        acts[~valid] = np.nan
        return ActionChunk(acts, valid, kept)

    def action_ids(self, actions: np.ndarray) -> np.ndarray:
        """Actions [k, D] in robot units -> their bins token ids int64 [k*D], time-major like the decoder's
        slots (slot = step*D + dim): normalized and binned exactly as `targets` sees training chunks.

        Round trip `action_ids(outputs(ids).actions)` == ids: a decoded id is its bin's centre, half a bin
        from either edge, so it re-encodes to itself, with two exceptions. (1) The block's lowest id
        (`vocab_size - n_bins`: values at or above the top edge) has no interval of its own (OpenVLA's
        convention, `vla.tokenizers.bins`): it decodes to the top interval's centre, which re-encodes to
        `vocab_size - n_bins + 1`. (2) Where half a bin's width in robot units is not above the float32
        rounding of the action (about |a| * 2**-24) the centre can land in a neighbouring bin: a constant
        dimension (zero range, scale 1/eps), or e.g. mean_std with std 1e-4 around 10. FAST raises ValueError:
        its tokens are DCT coefficients of the whole chunk, so a prefix of actions is no prefix of its tokens."""
        if self.cfg.action.tokenizer != "bins":
            raise ValueError(f"action_ids needs ActionConfig.tokenizer='bins', this policy's is "
                             f"{self.cfg.action.tokenizer!r}: its tokens are DCT coefficients of the whole chunk, "
                             "so a prefix of actions is no prefix of tokens (it cannot be forced)")
        a = np.asarray(actions)
        d = self.cfg.action.dim
        if a.ndim != 2 or a.shape[1] != d or a.shape[0] > self.cfg.action.horizon:
            raise ValueError(f"action_ids takes actions [k, {d}] with k <= ActionConfig.horizon="
                             f"{self.cfg.action.horizon}, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("action_ids got non-finite actions (NaN: a chunk that did not decode)")
        norm = self.normalize_actions(a)  # [k, D] float32, as training's targets
        return np.asarray(self.action_tokenizer.encode(norm), dtype=np.int64).reshape(-1)  # [k*D]
