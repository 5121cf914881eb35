"""Named configs shipped inside the package (`vla/configs/{model,train}/NAME.yaml`), and YAML loading with
`base:` inheritance. Torch-free.

    load_yaml("model", "tiny")                  # the named config, `base:` chain merged
    load_yaml("train", "runs/my.yaml")          # a path works wherever a name does
    names("model")                              # ['tiny', 'tiny_linear', ...]

A YAML may start with `base: NAME_OR_PATH` (a relative path is resolved next to the YAML): the base is
loaded first and the file's keys are merged over it, mappings key by key, everything else replaced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONFIG_ROOT = Path(__file__).resolve().parent
KINDS = ("model", "train")


def names(kind: str) -> list[str]:
    _check_kind(kind)
    return sorted(p.stem for p in (CONFIG_ROOT / kind).glob("*.yaml"))


def resolve(kind: str, name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """A config name or path -> the YAML file. Paths win when they exist; then `relative_to`; then names."""
    _check_kind(kind)
    p = Path(name_or_path)
    cands = [p] if p.is_absolute() else [*([relative_to / p] if relative_to is not None else []), p]
    for c in cands:
        if c.is_file():
            return c.resolve()
    named = CONFIG_ROOT / kind / f"{name_or_path}.yaml"
    if named.is_file():
        return named
    raise FileNotFoundError(f"{kind} config {str(name_or_path)!r}: no such file, nor a named config "
                            f"(named {kind} configs: {', '.join(names(kind))})")


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_yaml(kind: str, name_or_path: str | Path, relative_to: Path | None = None,
              _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping of a named or path config with its `base:` chain merged (cycles are refused)."""
    import yaml

    path = resolve(kind, name_or_path, relative_to)
    if path in _seen:
        raise ValueError(f"{kind} config {path}: `base:` chain loops ({' -> '.join(str(s) for s in _seen)})")
    with open(path) as f:
        d = yaml.safe_load(f)
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(d).__name__}")
    base = d.pop("base", None)
    if base is None:
        return d
    return merge(load_yaml(kind, base, path.parent, (*_seen, path)), d)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"config kind {kind!r}: must be one of {KINDS}")
