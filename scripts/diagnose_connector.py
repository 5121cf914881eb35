"""Why does a connector fail? Where the visual tokens lose what a grasp needs, measured on fresh sim scenes.

    .venv/bin/python scripts/diagnose_connector.py \
        --checkpoints runs/ablate/pixel_shuffle_s0/policy/checkpoint runs/ablate/resampler_s0/policy/checkpoint \
        --task PickCube --scenes 400 --out benchmarks/diagnose_connector.json

For each checkpoint, on the first frame of --scenes scenes (seeds 20000...; new cube positions each), it
computes the tower's patch features (before the connector) and the visual tokens (after it, as the LM or the
fusion module receives them) and reports:
- position probe: ridge regression (5-fold cross-validated R^2, the ridge strength picked by inner CV on the
  training folds) from the features to the instructed cube's xy on the table (`env.unwrapped.cube_pos(target)`),
  for the patch features and for the visual tokens. A connector that keeps the position scores near its
  tower; one that averages it away drops;
- token collapse: mean cosine similarity between the K tokens of one camera (1 = every query says the same),
  and how much a token varies across scenes relative to its norm (0 = the tokens ignore the image);
- with --heldout-scenes: the same readout fit on all train-split scenes and scored on held-out-split scenes
  (the cube in the checkerboard cells training never shows): does the representation interpolate positions?
- permutation test (resampler / qformer): shuffling the patch order changes the tokens by this much
  (relative); 0 means the connector cannot tell where a patch is except from its content;
- attention (resampler / qformer): the entropy of each query's attention over the P patches, divided by
  log P (1 = uniform: the query averages the whole image), and the mean spatial spread (std, in grid cells)
  of the attended locations.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

SEED = 20_000


def ridge_cv_r2(x: np.ndarray, y: np.ndarray, folds: int = 5, lambdas: tuple[float, ...] = (1e-2, 1e-1, 1, 10, 100, 1e3)
                ) -> float:
    """Cross-validated R^2 (pooled over folds and target dims) of ridge regression x -> y, features
    standardized on the training folds; the ridge strength per outer fold from an inner 4-fold CV."""
    n = len(x)
    idx = np.random.default_rng(0).permutation(n)
    parts = np.array_split(idx, folds)
    pred = np.zeros_like(y, dtype=np.float64)

    def fit_predict(tr: np.ndarray, te: np.ndarray, lam: float) -> np.ndarray:
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
        a, b = (x[tr] - mu) / sd, (x[te] - mu) / sd
        ym = y[tr].mean(0)
        # dual form (n_train x n_train): cheap when the features are wider than the scenes
        k = a @ a.T
        alpha = np.linalg.solve(k + lam * len(tr) * np.eye(len(tr)), y[tr] - ym)
        return b @ (a.T @ alpha) + ym

    for f in range(folds):
        te = parts[f]
        tr = np.concatenate([parts[g] for g in range(folds) if g != f])
        inner = np.array_split(tr, 4)
        best, best_err = lambdas[0], np.inf
        for lam in lambdas:
            err = 0.0
            for g in range(4):
                itr = np.concatenate([inner[h] for h in range(4) if h != g])
                err += float(((fit_predict(itr, inner[g], lam) - y[inner[g]]) ** 2).sum())
            if err < best_err:
                best, best_err = lam, err
        pred[te] = fit_predict(tr, te, best)
    ss_res = float(((pred - y) ** 2).sum())
    ss_tot = float(((y - y.mean(0)) ** 2).sum())
    return 1.0 - ss_res / ss_tot


def _attention(proj: Any, feats: Any, txt: Any, mask: Any) -> Any | None:
    """Attention weights [N, Q, P] of a resampler / qformer's cross-attention (averaged over heads), else None."""
    if not hasattr(proj, "cross_attention_weights"):
        return None
    return proj.cross_attention_weights(feats, txt, mask) if getattr(proj, "takes_text", False) else \
        proj.cross_attention_weights(feats)


def _scenes(policy: Any, io: Any, task: str, split: str, seeds: range) -> dict[str, Any]:
    """First frames of `seeds` on `split`: patch features (after the tower, TUNE and FiLM: what the connector
    takes) [N, C*P*Dv], visual tokens [N, C*K, D], the instructed cube's xy [N, 2], attention weights and
    the patch-shuffle change of queried connectors."""
    import torch

    import sim
    from vla.model.decoding import to_tensors

    env = sim.make(task, split=split, image_size=policy.cfg.vision.image_size)
    feats_all, toks_all, pos, attn_stats, perm_change = [], [], [], [], []
    c = len(policy.cfg.cameras)
    try:
        for i in seeds:
            obs, _ = env.reset(seed=i)
            u = env.unwrapped
            pos.append(np.asarray(u.cube_pos(u.target)[:2], dtype=np.float64))
            t = to_tensors(io.inputs([obs]))
            with torch.no_grad():
                txt = policy.embed_tokens(t["prompt_ids"])
                mask = t["prompt_mask"].bool()
                feats = policy.image_features(t["pixel_values"], txt, t["prompt_ids"], t["prompt_mask"])  # [C, P, Dv]
                _, _, vis, _ = policy.embed_observation(t["pixel_values"], t["prompt_ids"], t["prompt_mask"], t.get("state"))
                w = _attention(policy.projector, feats, txt.repeat_interleave(c, 0), mask.repeat_interleave(c, 0))
                if hasattr(policy.projector, "keys_values"):  # does the connector know where a patch is?
                    perm = torch.randperm(feats.shape[1], generator=torch.Generator().manual_seed(i))
                    a = policy.connect(feats, txt, t["prompt_mask"])
                    b = policy.connect(feats[:, perm], txt, t["prompt_mask"])
                    perm_change.append(float((a - b).norm() / (a.norm() + 1e-9)))
            feats_all.append(feats.flatten().numpy())
            toks_all.append(vis[0].numpy())  # [C*K, D]
            if w is not None:
                attn_stats.append(w.numpy())  # [C, Q, P]
    finally:
        env.close()
    return {"feats": np.stack(feats_all), "toks": np.stack(toks_all), "pos": np.stack(pos),
            "attn": np.stack(attn_stats) if attn_stats else None, "perm": perm_change}


def ridge_transfer_r2(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                      lambdas: tuple[float, ...] = (1e-2, 1e-1, 1, 10, 100, 1e3)) -> float:
    """R^2 on (x_test, y_test) of ridge fit on all of (x_train, y_train), the strength picked by 5-fold CV
    on the training set (how well a readout learned on one split's positions transfers to the other's)."""
    best = max(lambdas, key=lambda lam: ridge_cv_r2(x_train, y_train, lambdas=(lam,)))
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    ym = y_train.mean(0)
    alpha = np.linalg.solve(a @ a.T + best * len(a) * np.eye(len(a)), y_train - ym)
    pred = b @ (a.T @ alpha) + ym
    return 1.0 - float(((pred - y_test) ** 2).sum()) / float(((y_test - y_test.mean(0)) ** 2).sum())


def diagnose(ckpt: str, task: str, scenes: int, heldout_scenes: int = 0) -> dict[str, Any]:
    from vla.model.policy import VLAPolicy
    from vla.policy_io import PolicyIO

    policy, io = VLAPolicy.from_pretrained(ckpt), PolicyIO.load(ckpt)
    c = len(policy.cfg.cameras)
    tr = _scenes(policy, io, task, "train", range(SEED, SEED + scenes))
    feats_all, toks_all, pos, perm_change = tr["feats"], tr["toks"], tr["pos"], tr["perm"]
    attn_stats = tr["attn"]
    feats, toks, y = feats_all, toks_all, pos
    k = policy.projector.num_tokens
    per_cam = toks.reshape(len(toks), c, k, -1)
    unit = per_cam / (np.linalg.norm(per_cam, axis=-1, keepdims=True) + 1e-9)
    cos = np.einsum("nckd,ncjd->nckj", unit, unit)
    off = ~np.eye(k, dtype=bool)
    out: dict[str, Any] = {
        "checkpoint": ckpt, "projector": policy.cfg.projector.type, "fusion": policy.cfg.fusion.mode,
        "key_pos_embed": policy.cfg.projector.key_pos_embed,
        "task": task, "scenes": scenes, "tokens_per_camera": k, "patches_per_camera": int(policy.vision.num_patches),
        "position_r2_patch_features": ridge_cv_r2(feats, y),
        "position_r2_visual_tokens": ridge_cv_r2(toks.reshape(len(toks), -1), y),
        "token_cosine_within_camera": float(cos[..., off].mean()) if k > 1 else None,
        "token_variation_across_scenes": float((toks.std(0).mean(-1) / (np.linalg.norm(toks, axis=-1).mean(0) /
                                                                       np.sqrt(toks.shape[-1]) + 1e-9)).mean()),
    }
    if heldout_scenes:
        ho = _scenes(policy, io, task, "heldout", range(SEED, SEED + heldout_scenes))
        out["heldout_scenes"] = heldout_scenes
        out["position_r2_heldout_patch_features"] = ridge_transfer_r2(feats, y, ho["feats"], ho["pos"])
        out["position_r2_heldout_visual_tokens"] = ridge_transfer_r2(toks.reshape(len(toks), -1), y,
                                                                     ho["toks"].reshape(len(ho["toks"]), -1), ho["pos"])
    if perm_change:
        out["patch_shuffle_change"] = float(np.mean(perm_change))
    if attn_stats is not None:
        w = attn_stats  # [N, C, Q, P]
        p = w.shape[-1]
        ent = -(w * np.log(w + 1e-12)).sum(-1) / np.log(p)
        g = policy.vision.grid
        spread = None
        if g:
            yy, xx = np.divmod(np.arange(p), g)
            mx, my = (w * xx).sum(-1), (w * yy).sum(-1)
            var = (w * ((xx - mx[..., None]) ** 2 + (yy - my[..., None]) ** 2)).sum(-1)
            spread = float(np.sqrt(var).mean())
        out.update(attention_entropy_over_log_p=float(ent.mean()), attention_spread_cells=spread,
                   attention_peak_mean=float(w.max(-1).mean()),
                   queries_attending_alike=float(np.mean([np.corrcoef(w[:, ci].reshape(-1, p).T).mean()
                                                          for ci in range(w.shape[1])])))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", nargs="+", required=True)
    ap.add_argument("--task", default="PickCube")
    ap.add_argument("--scenes", type=int, default=400)
    ap.add_argument("--heldout-scenes", type=int, default=0,
                    help="also fit the position readout on the train split's scenes and score it on this many "
                         "held-out-split scenes (cube positions in the other cells)")
    ap.add_argument("--out", help="JSON report")
    args = ap.parse_args(argv)
    if args.scenes < 20:
        raise SystemExit("--scenes must be >= 20 (5-fold cross-validation)")
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    torch.set_num_threads(1)
    reports = [diagnose(c, args.task, args.scenes, args.heldout_scenes) for c in args.checkpoints]
    for r in reports:
        print(json.dumps(r, indent=2))
    if args.out:
        from vla.io import atomic_write_json

        atomic_write_json(Path(args.out), {"command": "python scripts/diagnose_connector.py " + " ".join(argv or []),
                                            "reports": reports})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
