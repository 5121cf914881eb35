"""The greedy decoding loop over step callables, shared by the torch KV-cache loop and the graph runtimes
(ONNX Runtime, TensorRT). Backend-neutral: it works on numpy arrays or torch tensors (`xp` = numpy or torch).

    ids = greedy(scores, step, n=28, offset=lo, eos=None, xp=np)     # [B, n'] int64

`scores` [B, A] rank the ids offset, offset+1, ... for slot 0; `step(tok, i)` feeds slot i's ids [B] back
and returns slot i+1's scores. With an end token (FAST), a row that emitted it keeps emitting it, and the
loop stops early once every row has (so `n' <= n`); fixed-length tokenizers run all n slots.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Step = Callable[[Any, int], Any]  # (token ids [B], slot i) -> scores [B, A] for slot i + 1


def greedy(scores: Any, step: Step, n: int, offset: int = 0, eos: int | None = None, xp: Any = None) -> Any:
    if n < 1:
        raise ValueError(f"greedy decoding needs n >= 1 slots, got {n}")
    if xp is None:
        import numpy as xp
    toks = []
    done = None
    for i in range(n):
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
