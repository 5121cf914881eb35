"""Action tokenizers: continuous actions <-> reserved LLM vocabulary ids, one interface.

    from vla.tokenizers import BinActionTokenizer, tokenizer_from_config
    tok = BinActionTokenizer(vocab_size=32000)          # OpenVLA's 256 uniform bins over [-1, 1]
    ids = tok.encode(actions)                           # [..., 7] -> [..., 7] int64
    actions_hat = tok.decode(ids).actions

Registered types (the "type" key of `to_config()`): see `TOKENIZERS`.
"""

from __future__ import annotations

from vla.tokenizers.base import ActionTokenizer, Decoded
from vla.tokenizers.bins import BinActionTokenizer
from vla.tokenizers.fast import FastActionTokenizer

TOKENIZERS: dict[str, type[ActionTokenizer]] = {
    BinActionTokenizer.type_name: BinActionTokenizer,
    FastActionTokenizer.type_name: FastActionTokenizer,
}


def tokenizer_from_config(cfg: dict) -> ActionTokenizer:
    """Rebuild a tokenizer from `tok.to_config()`; unknown types raise ValueError listing the known ones."""
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ValueError(f"tokenizer config must be a dict with a 'type' key, got {cfg!r:.200}")
    cls = TOKENIZERS.get(cfg["type"])
    if cls is None:
        raise ValueError(f"unknown action tokenizer type {cfg['type']!r}; available: {sorted(TOKENIZERS)}")
    return cls.from_config(cfg)


__all__ = [
    "TOKENIZERS",
    "ActionTokenizer",
    "BinActionTokenizer",
    "Decoded",
    "FastActionTokenizer",
    "tokenizer_from_config",
]
