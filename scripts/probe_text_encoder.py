"""How well an instruction's features tell held-out paraphrases apart (issue 17): a linear probe per feature kind.

    .venv/bin/python scripts/probe_text_encoder.py --out benchmarks/probe_text_encoder.json

Every task's training templates, filled with every colour (pair) of the sim's palette, train a linear
classifier (multinomial logistic regression, the same recipe for every feature kind) for three labels: the
task, the target colour (the first slot) and, where a template has one, the second slot's colour (pad, zone
or base). It is then scored on the held-out templates, filled the same way: instructions whose phrasing no
training instruction used. Feature kinds:
- `bpe_bag`: the embedded byte-level BPE (what `tiny` uses), trained on the training instructions as
  `vla train` trains it, as a bag of token ids: what any policy built on these ids can know before it learns
  embeddings, and all it can know about a token it never saw in training (its embedding is never trained);
- `minilm_mean`: the frozen all-MiniLM-L6-v2 sentence embedding (`tiny_minilm`'s instruction features).
A policy must at least read the task and the colours from its instruction; a probe that cannot do it
from held-out phrasings says the features do not carry them there.
"""

from __future__ import annotations

import argparse
import itertools
import string
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def instructions(split: str) -> list[tuple[str, str, str, str | None]]:
    """(instruction, task, first colour, second colour or None) for every template of the split x colour filling."""
    import sim
    from sim.env import PALETTE

    out = []
    for task in sim.list_tasks():
        env_cls = sim.registry.task_entry(task).env_cls
        for tpl in (env_cls.TRAIN_TEMPLATES if split == "train" else env_cls.HELDOUT_TEMPLATES):
            slots = [f for _, f, _, _ in string.Formatter().parse(tpl) if f]
            for colours in itertools.permutations(PALETTE, len(slots)):
                text = tpl.format(**dict(zip(slots, colours, strict=True)))
                out.append((text, task, colours[0], colours[1] if len(colours) > 1 else None))
    return out


def bpe_bag(train: list[str], texts: list[str]) -> np.ndarray:
    from vla.text import TextTokenizer

    tok = TextTokenizer.train_embedded(512, train)
    x = np.zeros((len(texts), 512), np.float32)
    for i, t in enumerate(texts):
        for j in tok.encode(t):
            x[i, j] = 1.0
    return x


def minilm_mean(texts: list[str]) -> np.ndarray:
    from vla.config import TextEncoderConfig
    from vla.model.text_encoder import TextEncoder, minilm_dir
    from vla.text import TextTokenizer

    tok = TextTokenizer.from_tokenizer_json(minilm_dir() / "tokenizer.json", 0, 101, 0)
    enc = TextEncoder(TextEncoderConfig(pretrained="minilm"), out_dim=1).eval()
    rows = []
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([tok.encode(t) + [102]])
            rows.append(enc.features(ids, torch.ones_like(ids, dtype=torch.bool))[0, 0].numpy())
    return np.stack(rows)


def probe(xtr: np.ndarray, ytr: list, xte: np.ndarray, yte: list, seed: int = 0) -> dict:
    """Multinomial logistic regression (Adam, 600 steps, L2 1e-3, standardized features): accuracies."""
    classes = sorted(set(ytr))
    keep = [i for i, y in enumerate(yte) if y in classes]
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    a = torch.from_numpy((xtr - mu) / sd).float()
    b = torch.from_numpy((xte[keep] - mu) / sd).float()
    ya = torch.tensor([classes.index(y) for y in ytr])
    yb = torch.tensor([classes.index(yte[i]) for i in keep])
    torch.manual_seed(seed)
    w = torch.zeros(a.shape[1], len(classes), requires_grad=True)
    bias = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.Adam([w, bias], lr=0.05)
    for _ in range(600):
        loss = torch.nn.functional.cross_entropy(a @ w + bias, ya) + 1e-3 * (w ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        train_acc = float(((a @ w + bias).argmax(1) == ya).float().mean())
        held = (b @ w + bias).argmax(1) == yb
    per_class = {str(c): float(held[yb == k].float().mean()) for k, c in enumerate(classes) if bool((yb == k).any())}
    return {"train_acc": train_acc, "heldout_acc": float(held.float().mean()), "heldout_n": len(keep),
            "classes": len(classes), "heldout_acc_per_class": per_class}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "probe_text_encoder.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    tr, te = instructions("train"), instructions("heldout")
    texts_tr, texts_te = [r[0] for r in tr], [r[0] for r in te]
    feats = {"bpe_bag": (bpe_bag(texts_tr, texts_tr), bpe_bag(texts_tr, texts_te)),
             "minilm_mean": (minilm_mean(texts_tr), minilm_mean(texts_te))}
    labels = {"task": 1, "first colour": 2, "second colour": 3}
    results: dict[str, dict] = {}
    for kind, (xtr, xte) in feats.items():
        results[kind] = {}
        for name, col in labels.items():
            itr = [i for i, r in enumerate(tr) if r[col] is not None]
            ite = [i for i, r in enumerate(te) if r[col] is not None]
            results[kind][name] = probe(xtr[itr], [tr[i][col] for i in itr], xte[ite], [te[i][col] for i in ite])
    report = {"train_instructions": len(tr), "heldout_instructions": len(te), "probe": results,
              "seconds": time.perf_counter() - t0}
    from vla.io import atomic_write_json

    atomic_write_json(args.out, report)
    print(f"{len(tr)} training / {len(te)} held-out instructions; held-out accuracy of a linear probe:")
    print("| features | task | first colour | second colour |\n|---|---|---|---|")
    for kind, r in results.items():
        print(f"| {kind} | " + " | ".join(f"{r[n]['heldout_acc']:.3f}" for n in labels) + " |")
    for kind, r in results.items():
        print(f"{kind}: task accuracy per task " + ", ".join(f"{t} {a:.2f}" for t, a in r["task"]["heldout_acc_per_class"].items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
