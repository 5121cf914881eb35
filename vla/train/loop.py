"""Fine-tune a VLA policy on a LeRobot dataset: `train(cfg, dataset_dir, run_dir)`.

    vla train --config tiny --dataset data/demos --out runs/tiny [--max-steps N] [--resume]
    torchrun --nproc_per_node 2 -m vla.cli.train --config ...    # DDP (gloo on CPU, nccl on CUDA)

Run directory:
    checkpoint/        the policy (config.json, model.safetensors, tokenizer.json, norm_stats.json)
    train_state/       optimizer state (+ LoRA training weights) for --resume; no pickle
    metrics.jsonl      one line per log/eval step; loss_curve.png; train_config.json; summary.json

Loss on action tokens only (logits restricted to the action block); AdamW with linear warmup and
cosine decay; bf16 autocast where supported; per-step batches drawn from a seeded permutation of
(seed, step), so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vla.io import atomic_write_json
from vla.model.decoding import decode
from vla.model.policy import VLAPolicy
from vla.normalization import Normalizer, NormStats, load_norm_stats
from vla.policy_io import ENV_STATE_KEY, STATE_KEY, PolicyIO
from vla.progress import progress as progress_bar
from vla.train.config import TrainConfig
from vla.train.data import (
    Frames,
    check_env_states,
    chunk_targets,
    episode_starts,
    load_frames,
    make_batch,
    pick_frames,
    sampling_weights,
    split_episodes,
)
from vla.train.metrics import MetricsLog, lr_lambda, plot_loss_curve
from vla.train.self_prefix import self_prefix
from vla.train.state import load_train_state, save_train_state


class _LossModule(nn.Module):
    """What DDP wraps: forward(batch) -> loss, so gradient hooks see the whole policy."""

    def __init__(self, policy: VLAPolicy, bin_sigma: float = 0.0) -> None:
        super().__init__()
        self.policy = policy
        self.bin_sigma = bin_sigma

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        return self.policy.compute_loss(batch, bin_sigma=self.bin_sigma)


def _dist_setup() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); initializes the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def fit_normalizers(policy: VLAPolicy, frames: Frames) -> PolicyIO:
    """The policy's transforms with action stats (gripper unnormalized), state stats (all dims) and, with an
    auxiliary head, task-state stats fit on the dataset."""
    cfg = policy.cfg
    norms = {"action": Normalizer(NormStats.fit(frames.actions), mode=cfg.action.norm_mode)}
    if cfg.use_state:
        if frames.states.shape[1] != cfg.state_dim:
            raise ValueError(f"dataset state has {frames.states.shape[1]} dims, VLAConfig.state_dim={cfg.state_dim}")
        norms[STATE_KEY] = Normalizer(NormStats.fit(frames.states), mode="bounds_q99",
                                      mask=np.ones(cfg.state_dim, dtype=bool))
    if cfg.aux is not None:  # train() ran check_env_states on these frames
        norms[ENV_STATE_KEY] = Normalizer(NormStats.fit(frames.env_states), mode="mean_std",
                                          mask=np.ones(cfg.aux.state_dim, dtype=bool))
    return policy.make_io(norms)


def _apply_trainability(policy: VLAPolicy, cfg: TrainConfig) -> None:
    if cfg.lora is not None:
        from peft import LoraConfig, get_peft_model

        lcfg = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=list(cfg.lora.target_modules))
        policy.lm = get_peft_model(policy.lm, lcfg)  # freezes the base LM, adapters train
    for p in policy.vision.parameters():
        p.requires_grad_(not cfg.freeze_vision)
    for p in policy.projector.parameters():
        p.requires_grad_(not cfg.freeze_projector)
    if cfg.freeze_lm and cfg.lora is None:
        for p in policy.lm.parameters():
            p.requires_grad_(False)
    # placeholders only feed parallel decoding; unused parameters would stall DDP's gradient reduction
    policy.action_slots.requires_grad_(policy.cfg.action.decoding == "parallel")


def merged_state_dict(policy: VLAPolicy) -> dict[str, torch.Tensor] | None:
    """Inference weights of a LoRA-wrapped policy (adapters merged), or None when there is no LoRA."""
    from peft import PeftModel

    if not isinstance(policy.lm, PeftModel):
        return None
    policy.lm.merge_adapter()
    try:
        out = {}
        for k, v in policy.state_dict().items():
            if "lora_" in k:
                continue
            k = k.replace("lm.base_model.model.", "lm.", 1).replace(".base_layer.", ".")
            out[k] = v.detach().clone()
    finally:
        policy.lm.unmerge_adapter()
    return out


@torch.no_grad()
def evaluate_split(policy: VLAPolicy, io: PolicyIO, frames: Frames, idx: np.ndarray, batch_size: int,
                   n_batches: int, seed: int, device: torch.device) -> dict[str, float]:
    """Teacher-forced loss / token accuracy, and decoded-token accuracy + L1 (robot units) on real decoding."""
    policy.eval()
    rng = np.random.default_rng([seed, 12345])
    pick = rng.permutation(idx)[: batch_size * n_batches]
    tot = {"loss": 0.0, "token_acc": 0.0, "decoded_token_acc": 0.0, "l1": 0.0}
    n_tok = n_dec = n_l1 = 0
    for lo in range(0, len(pick), batch_size):
        b = make_batch(io, frames, pick[lo: lo + batch_size], None, None)
        b = {k: v.to(device) for k, v in b.items()}
        _, st = policy.compute_loss(b)
        tot["loss"] += st["loss"] * st["n_tokens"]
        tot["token_acc"] += st["token_acc"] * st["n_tokens"]
        n_tok += st["n_tokens"]
        ids = decode(policy, b)
        if policy.cfg.action.tokenizer == "bins":
            sup = b["action_mask"]
            tot["decoded_token_acc"] += float((ids == b["action_ids"])[sup].float().sum())
            n_dec += int(sup.sum())
        acts = io.outputs(ids.cpu().numpy()).actions  # [B, H, D] robot units (NaN: did not decode)
        err = np.abs(acts - b["actions"].cpu().numpy())  # [B, H, D]
        valid = b["step_valid"].cpu().numpy()
        tot["l1"] += float(np.nansum(err[valid]))
        n_l1 += int(valid.sum()) * err.shape[-1]
    out = {"loss": tot["loss"] / max(n_tok, 1), "token_acc": tot["token_acc"] / max(n_tok, 1),
           "l1": tot["l1"] / max(n_l1, 1)}
    if n_dec:
        out["decoded_token_acc"] = tot["decoded_token_acc"] / n_dec
    policy.train()
    return out


def _autocast(cfg: TrainConfig, device: torch.device) -> Any:
    if cfg.precision == "fp32":
        return nullcontext()
    if cfg.precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def train(cfg: TrainConfig, dataset: str | Path | list, out: str | Path, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train and write the run directory; returns the summary (final metrics, timings)."""
    rank, world, local_rank = _dist_setup()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    out = Path(out)
    ckpt_dir, state_dir = out / "checkpoint", out / "train_state"
    if not resume and (ckpt_dir.exists() or state_dir.exists()):
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or pick a new --out")
    if resume and not state_dir.is_dir():
        raise FileNotFoundError(f"--resume: {state_dir} does not exist")
    mcfg = cfg.model_config()
    roots = [str(d) for d in dataset] if isinstance(dataset, (list, tuple)) else [str(dataset)]
    frames = load_frames(roots, mcfg.cameras, mcfg.vision.image_size, vision=mcfg.vision)
    check_env_states(frames, mcfg.aux.state_dim if mcfg.aux else None)  # before building anything; covers --resume
    train_idx, val_idx = split_episodes(frames, cfg.val_fraction, cfg.seed)
    torch.manual_seed(cfg.seed)  # identical init on every rank (DDP also broadcasts rank 0's)
    if resume:
        policy = VLAPolicy.from_pretrained(ckpt_dir)
        io = policy.make_io(load_norm_stats(ckpt_dir / "norm_stats.json"))
    elif cfg.init_from is not None:  # fine-tuning: the checkpoint's weights, statistics of this data
        policy = VLAPolicy.from_pretrained(cfg.init_from, dtype=torch.float32)
        io = fit_normalizers(policy, frames)
    else:
        policy = VLAPolicy.from_config(mcfg, instructions=frames.tasks)
        io = fit_normalizers(policy, frames)
        if mcfg.action.tokenizer == "fast":
            chunks, _ = chunk_targets(frames, train_idx, mcfg.action.horizon)
            policy.action_tokenizer.fit(io.normalizers["action"].normalize(chunks.astype(np.float64)))
    _apply_trainability(policy, cfg)
    policy.to(device).train()
    params = [p for p in policy.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    start = 0
    if resume:
        start, _ = load_train_state(state_dir, opt, model=policy if cfg.lora is not None else None)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_lambda(s, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio), last_epoch=start - 1)
    model: nn.Module = _LossModule(policy, cfg.bin_sigma)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[local_rank] if device.type == "cuda" else None)
    log = MetricsLog(out / "metrics.jsonl")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "train_config.json",
                          {"train": cfg.to_dict(), "model": mcfg.to_dict(), "dataset": roots, "world_size": world})

    eval_split = "val" if val_idx is not None else "train_eval"
    eval_idx = val_idx if val_idx is not None else train_idx
    weights = sampling_weights(frames, train_idx, cfg.start_oversample)
    starts = episode_starts(frames)
    if cfg.prefix_self > 0 and policy.cfg.action.prefix_conditioning <= 0:
        raise ValueError(f"TrainConfig.prefix_self={cfg.prefix_self}: the model is not prefix-conditioned; set "
                         "model.action.prefix_conditioning > 0 (parallel decoding)")

    def save(step: int) -> None:
        if rank == 0:
            policy.save_pretrained(ckpt_dir, io, state_dict=merged_state_dict(policy))
            save_train_state(state_dir, opt, step, model=policy if cfg.lora is not None else None)
        _barrier(world)

    bar = progress_bar(range(start, cfg.max_steps), initial=start, total=cfg.max_steps, desc="train",
                       disable=rank != 0 or not progress)
    t0, seen, last = time.perf_counter(), 0, {}
    gbs = cfg.batch_size * world
    for step in bar:
        rng = np.random.default_rng([cfg.seed, step])
        pick = pick_frames(rng, train_idx, gbs, weights)
        pick = pick[rank * cfg.batch_size:(rank + 1) * cfg.batch_size]
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)) + rank)
        batch = make_batch(io, frames, pick, cfg.augment, gen)
        if cfg.prefix_self > 0:  # some conditioned rows get the policy's own earlier prediction as their prefix
            self_prefix(policy, io, frames, pick, batch, cfg.prefix_self, gen, starts)
        batch = {k: v.to(device) for k, v in batch.items()}
        with _autocast(cfg, device):
            loss, stats = model(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        seen += gbs
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            sps = seen / max(time.perf_counter() - t0, 1e-9)
            last = {"step": done, "split": "train", "loss": stats["loss"], "token_acc": stats["token_acc"],
                    "lr": sched.get_last_lr()[0], "samples_per_s": sps}
            if "aux_mse" in stats:
                last["aux_mse"] = stats["aux_mse"]
            if rank == 0:
                log.write(last)
            bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['token_acc']:.3f}", sps=f"{sps:.1f}")
        if done % cfg.val_every == 0 or done == cfg.max_steps:
            if rank == 0:
                ev = evaluate_split(policy, io, frames, eval_idx, cfg.batch_size, cfg.val_batches, cfg.seed, device)
                log.write({"step": done, "split": eval_split, **ev})
                bar.write(f"step {done} {eval_split}: " + " ".join(f"{k}={v:.4f}" for k, v in ev.items()))
            _barrier(world)
        if done % cfg.save_every == 0 and done != cfg.max_steps:
            save(done)
    save(cfg.max_steps)
    bar.close()
    summary: dict[str, Any] = {"steps": cfg.max_steps, "world_size": world, "train_seconds": time.perf_counter() - t0,
                               "train_frames": int(len(train_idx)), "episodes": int(len(np.unique(frames.episode))),
                               "last_train": last}
    if rank == 0:
        evals = [r for r in log.read() if r.get("split") == eval_split]
        summary["last_eval"] = evals[-1] if evals else None
        atomic_write_json(out / "summary.json", summary)
        plot_loss_curve(out / "metrics.jsonl", out / "loss_curve.png")
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return summary
