"""The greedy decoding loop over step callables, shared by the torch KV-cache loop and the graph runtimes
(ONNX Runtime, TensorRT). Backend-neutral: it works on numpy arrays or torch tensors (`xp` = numpy or torch).

    ids = greedy(scores, step, n=28, offset=lo, eos=None, xp=np)     # [B, n'] int64
    ids = greedy(scores, step, n=28, offset=lo, xp=np, forced=f)     # f [B, k]: slots 0..k-1 are f's ids
    k = check_prefix(prefix_ids, batch=B, n=28, lo=lo, hi=hi)        # the decoders' validation of forced ids

`scores` [B, A] rank the ids offset, offset+1, ... for slot 0; `step(tok, i)` feeds slot i's ids [B] back
and returns slot i+1's scores. With an end token (FAST), a row that emitted it keeps emitting it, and the
loop stops early once every row has (so `n' <= n`); fixed-length tokenizers run all n slots.

Prefix forcing (asynchronous chunk inference: the actions that execute while the next chunk is inferred
are already known): `forced` [B, k] holds absolute vocabulary ids (same backend as `scores`). Slot i < k
emits `forced[:, i]` instead of the argmax and the step is called with it, so slots k.. condition on the
forced tokens. A forced end token ends its row like a decoded one (later forced ids of that row become the
end token). k = 0 or `forced=None` is the unforced loop, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Step = Callable[[Any, int], Any]  # (token ids [B], slot i) -> scores [B, A] for slot i + 1

_INT_DTYPES = {f"{s}int{b}" for s in ("", "u") for b in (8, 16, 32, 64)}


def _forced_len(forced: Any, batch: int, n: int) -> int:
    """k of forced ids [B, k] (0 for None); ValueError on a shape the loop cannot use."""
    if forced is None:
        return 0
    if forced.ndim != 2 or forced.shape[0] != batch or forced.shape[1] > n:
        raise ValueError(f"forced ids must be [B={batch}, k <= n={n}], got shape {tuple(forced.shape)}")
    return int(forced.shape[1])


def greedy(scores: Any, step: Step, n: int, offset: int = 0, eos: int | None = None, xp: Any = None,
           forced: Any = None) -> Any:
    if n < 1:
        raise ValueError(f"greedy decoding needs n >= 1 slots, got {n}")
    if xp is None:
        import numpy as xp
    k = _forced_len(forced, scores.shape[0], n)
    toks = []
    done = None
    for i in range(n):
        if i < k:
            tok = forced[:, i]  # [B] absolute ids
        else:
            tok = scores.argmax(-1)  # [B]
            if offset:
                tok = tok + offset
        if eos is not None:
            if done is None:
                done = tok != tok  # all False, in the backend's own bool type
            tok = xp.where(done, eos, tok)  # rows that ended keep emitting EOS
            done = done | (tok == eos)
        toks.append(tok)
        if i == n - 1 or (done is not None and bool(done.all())):  # the only host sync: FAST's early stop
            break
        scores = step(tok, i)
    return xp.stack(toks, 1)  # [B, n']


def check_prefix(ids: Any, batch: int, n: int, lo: int, hi: int) -> int:
    """Validate forced ids (numpy or torch) for a decoder of n slots over the action block [lo, hi) -> k.

    ids must be integers of shape [B, k] with B == `batch`, 0 <= k <= n and every id in [lo, hi);
    anything else is a ValueError naming `prefix_ids` and what is wrong."""
    if ids.ndim != 2:
        raise ValueError(f"prefix_ids must be [B, k] token ids, got shape {tuple(ids.shape)}")
    if str(ids.dtype).removeprefix("torch.") not in _INT_DTYPES:
        raise ValueError(f"prefix_ids must be integer token ids, got dtype {ids.dtype}")
    b, k = ids.shape
    if b != batch:
        raise ValueError(f"prefix_ids has batch {b}, the observations have batch {batch}")
    if k > n:
        raise ValueError(f"prefix_ids has k={k} tokens, more than the policy's n={n} action slots")
    bad = (ids < lo) | (ids >= hi)
    if k and bool(bad.any()):
        raise ValueError(f"prefix_ids holds id {int(ids[bad][0])}, outside the action block [{lo}, {hi})")
    return int(k)
