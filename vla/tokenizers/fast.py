"""FAST-style chunk tokenizer: DCT along time, scale and round, byte-pair encoding, reserved ids.

In the spirit of FAST (Pertsch et al., 2025, "FAST: Efficient Action Tokenization for VLAs"):

1. A chunk of H normalized actions [H, D] is clipped to [low, high] and transformed with an
   orthonormal DCT-II along time, per dimension: smooth motion puts its energy in few low frequencies.
2. Coefficients are multiplied by `scale` and rounded to integers; most high-frequency ones become 0.
3. The integer matrix is flattened low-frequency first (all dims of frequency 0, then of frequency 1,
   ...), each integer is mapped to one character, and a BPE model (the `tokenizers` library) fitted on
   training chunks merges the frequent runs (long zero tails) into single tokens.
4. BPE token b maps onto the reserved LLM id `vocab_size - n_tokens + b`; one extra token `<eoa>`
   marks the end of a chunk, so a model knows where to stop.

The character alphabet covers every integer an in-range chunk can produce: an orthonormal DCT
coefficient is bounded by `sqrt(H) * max|a|`, so no chunk ever meets an unknown symbol.
Decoding is the inverse; a sequence that does not decode to exactly H*D coefficients (a model's
malformed output) returns `valid=False` with NaN actions, never zeros.

    tok = FastActionTokenizer(vocab_size=32000, action_dim=7, horizon=10).fit(chunks)  # [N, 10, 7]
    ids = tok.encode(chunk)           # [10, 7] -> list[int]
    dec = tok.decode(ids)             # Decoded(actions [10, 7], valid=True)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from scipy.fft import dct, idct

from vla.tokenizers.base import ActionTokenizer, Decoded, check_actions

_EOA = "<eoa>"
_CHAR_BASE = 0x4E00  # a block of printable, non-whitespace code points: one per integer value


class FastActionTokenizer(ActionTokenizer):
    """DCT + BPE chunk tokenizer over a reserved block of `n_tokens` ids at the top of the vocabulary."""

    type_name: ClassVar[str] = "fast"

    def __init__(
        self,
        vocab_size: int,
        action_dim: int,
        horizon: int,
        n_tokens: int = 1024,
        scale: float = 10.0,
        low: float = -1.0,
        high: float = 1.0,
    ) -> None:
        for name, v in (("vocab_size", vocab_size), ("action_dim", action_dim), ("horizon", horizon)):
            if int(v) != v or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        if not low < high:
            raise ValueError(f"need low < high, got low={low!r}, high={high!r}")
        self.vocab_size, self._action_dim, self.horizon = int(vocab_size), int(action_dim), int(horizon)
        self.n_tokens, self.scale, self.low, self.high = int(n_tokens), float(scale), float(low), float(high)
        # largest |coefficient| an in-range chunk can reach, after scaling and rounding
        self.max_q = int(math.ceil(math.sqrt(self.horizon) * self.scale * max(abs(low), abs(high))))
        alphabet = 2 * self.max_q + 1
        if self.n_tokens < alphabet + 1:
            raise ValueError(
                f"n_tokens={n_tokens} is too small: the coefficient alphabet alone needs {alphabet} symbols "
                f"(+1 for <eoa>) at horizon={horizon}, scale={scale}; raise n_tokens or lower scale"
            )
        if self.n_tokens > self.vocab_size:
            raise ValueError(f"n_tokens ({n_tokens}) cannot exceed vocab_size ({vocab_size})")
        self._bpe = None  # tokenizers.Tokenizer once fitted
        self._char_to_int: dict[str, int] = {chr(_CHAR_BASE + i): i - self.max_q for i in range(alphabet)}

    # ---- fitting --------------------------------------------------------------------------

    def fit(self, chunks: np.ndarray) -> FastActionTokenizer:
        """Fit the BPE merges on normalized action chunks [N, H, D]; returns self."""
        from tokenizers import Tokenizer, models, trainers

        x = self._check_chunks(chunks, "fit chunks")
        if x.ndim != 3 or x.shape[0] < 1:
            raise ValueError(
                f"fit chunks must have shape [N, {self.horizon}, {self.action_dim}], got {x.shape}"
            )
        texts = self._to_text(x)
        bpe = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=self.n_tokens,
            special_tokens=[_EOA],
            initial_alphabet=list(self._char_to_int),
            show_progress=False,
        )
        bpe.train_from_iterator(texts, trainer=trainer)
        self._set_bpe(bpe)
        return self

    def _set_bpe(self, bpe: Any) -> None:
        self._bpe = bpe
        vocab = bpe.get_vocab()  # token string -> bpe id
        n = bpe.get_vocab_size()
        if n > self.n_tokens:
            raise ValueError(
                f"BPE vocabulary has {n} tokens, more than the reserved n_tokens={self.n_tokens}"
            )
        self._offset = self.vocab_size - self.n_tokens
        self._ids = self._offset + np.arange(n, dtype=np.int64)
        self._id_to_piece = [None] * n
        for piece, b in vocab.items():
            self._id_to_piece[b] = piece
        self._eoa_bpe = vocab[_EOA]

    @property
    def fitted(self) -> bool:
        return self._bpe is not None

    def _require_fit(self) -> None:
        if self._bpe is None:
            raise ValueError("FastActionTokenizer is not fitted: call .fit(chunks) or load a fitted config")

    # ---- interface ------------------------------------------------------------------------

    @property
    def action_dim(self) -> int:
        return self._action_dim

    @property
    def action_token_ids(self) -> np.ndarray:
        self._require_fit()
        return self._ids

    @property
    def eos_id(self) -> int:
        """Reserved id of `<eoa>`, the end-of-chunk token a model emits after a chunk."""
        self._require_fit()
        return int(self._offset + self._eoa_bpe)

    def encode(self, chunks: Any, add_eos: bool = False) -> list[int] | list[list[int]]:
        """[H, D] -> list[int]; [N, H, D] -> list of N lists (lengths vary)."""
        self._require_fit()
        if type(chunks).__module__.startswith("torch"):
            chunks = chunks.detach().cpu().numpy()
        x = self._check_chunks(chunks, "chunks")
        single = x.ndim == 2
        x = x[None] if single else x
        if x.ndim != 3:
            raise ValueError(f"chunks must be [H, D] or [N, H, D], got shape {x.shape}")
        encs = self._bpe.encode_batch(self._to_text(x))
        tail = [self.eos_id] if add_eos else []
        out = [[self._offset + b for b in e.ids] + tail for e in encs]
        return out[0] if single else out

    def decode(self, ids: Any, strict: bool = True) -> Decoded:
        """One id sequence -> Decoded([H, D], valid scalar); a list of sequences -> batched Decoded.

        The sequence ends at the first `<eoa>` (ids after it are ignored). strict=True raises
        ValueError for an id outside the reserved block; strict=False marks that sequence invalid.
        """
        self._require_fit()
        if type(ids).__module__.startswith("torch"):
            ids = ids.detach().cpu().numpy()
        if isinstance(ids, np.ndarray):
            if ids.dtype.kind not in "iu":
                raise ValueError(f"token ids must be integers, got dtype {ids.dtype}")
            ids = ids.tolist()
        if not isinstance(ids, (list, tuple)):
            raise ValueError(f"ids must be a sequence of ints or of sequences, got {type(ids).__name__}")
        batched = len(ids) > 0 and isinstance(ids[0], (list, tuple, np.ndarray))
        seqs = ids if batched else [ids]
        acts = np.full((len(seqs), self.horizon, self.action_dim), np.nan, dtype=np.float32)
        valid = np.zeros(len(seqs), dtype=bool)
        for i, seq in enumerate(seqs):
            coeffs = self._ids_to_coeffs(list(seq), strict)
            if coeffs is not None:
                acts[i] = self._from_coeffs(coeffs)
                valid[i] = True
        if batched:
            return Decoded(acts, valid)
        return Decoded(acts[0], valid[0])

    def _ids_to_coeffs(self, seq: list, strict: bool) -> np.ndarray | None:
        n_bpe = len(self._id_to_piece)
        pieces = []
        for t in seq:
            if isinstance(t, float) or int(t) != t:
                raise ValueError(f"token ids must be integers, got {t!r}")
            b = int(t) - self._offset
            if not 0 <= b < n_bpe:
                if strict:
                    raise ValueError(
                        f"token id {int(t)} is outside the FAST block [{self._offset}, {self._offset + n_bpe - 1}]"
                    )
                return None
            if b == self._eoa_bpe:
                break
            pieces.append(self._id_to_piece[b])
        text = "".join(pieces)
        if len(text) != self.horizon * self.action_dim:
            return None  # malformed: too few / too many coefficients
        q = np.fromiter((self._char_to_int[c] for c in text), dtype=np.int64, count=len(text))
        return q.reshape(self.horizon, self.action_dim)

    def tokens_per_step(self, action_dim: int) -> float:
        """FAST has no fixed tokens per step; see `encode` lengths (benchmarks report the mean)."""
        raise ValueError(
            "FastActionTokenizer emits a variable number of tokens per chunk; use len(encode(chunk))"
        )


    # ---- transforms -----------------------------------------------------------------------

    def _check_chunks(self, chunks: Any, what: str) -> np.ndarray:
        x = check_actions(chunks, self.action_dim, what).astype(np.float64)
        if x.ndim >= 2 and x.shape[-2] != self.horizon:
            raise ValueError(f"{what} must have horizon {self.horizon} (axis -2), got shape {x.shape}")
        if x.ndim < 2:
            raise ValueError(f"{what} must be [H, D] or [N, H, D], got shape {x.shape}")
        return x

    def _to_text(self, x: np.ndarray) -> list[str]:
        c = dct(np.clip(x, self.low, self.high), type=2, norm="ortho", axis=-2)  # [N, H, D]
        q = np.clip(np.rint(c * self.scale).astype(np.int64), -self.max_q, self.max_q) + self.max_q
        codes = q.reshape(q.shape[0], -1) + _CHAR_BASE  # low frequency first, all dims per frequency
        return ["".join(map(chr, row)) for row in codes.tolist()]

    def _from_coeffs(self, q: np.ndarray) -> np.ndarray:
        return idct(q.astype(np.float64) / self.scale, type=2, norm="ortho", axis=0).astype(np.float32)

    # ---- serialization --------------------------------------------------------------------

    def to_config(self) -> dict:
        return {
            "type": self.type_name,
            "vocab_size": self.vocab_size,
            "action_dim": self.action_dim,
            "horizon": self.horizon,
            "n_tokens": self.n_tokens,
            "scale": self.scale,
            "low": self.low,
            "high": self.high,
            "bpe": None if self._bpe is None else self._bpe.to_str(),
        }

    @classmethod
    def from_config(cls, cfg: dict) -> FastActionTokenizer:
        tok = cls(
            cfg["vocab_size"],
            cfg["action_dim"],
            cfg["horizon"],
            cfg.get("n_tokens", 1024),
            cfg.get("scale", 10.0),
            cfg.get("low", -1.0),
            cfg.get("high", 1.0),
        )
        if cfg.get("bpe"):
            from tokenizers import Tokenizer

            tok._set_bpe(Tokenizer.from_str(cfg["bpe"]))
        return tok
