"""Export a `VLAPolicy` to ONNX graphs plus a manifest: everything a runtime needs, no checkpoint.

    manifest = export_onnx(VLAPolicy.from_pretrained(ckpt), PolicyIO.load(ckpt), "exports/x")
    vla export onnx --checkpoint runs/x/checkpoint --out exports/x

The export directory (written atomically):
    manifest.json                 graphs with input/output names, shapes, dtypes; sequence layout; versions
    encoder.onnx  parallel.onnx  prefill.onnx  decode_step.onnx   (see `deploy.export.graphs`)
    *.onnx.data                   external weights (graphs over `EXTERNAL_DATA_THRESHOLD` bytes)
    policy/                       a weightless checkpoint: config.json, tokenizer files, norm_stats.json,
                                  loaded by `vla.policy_io.PolicyIO` to run the model's own transforms

Graphs are traced with the TorchScript exporter at opset 17 (`dynamo=False`: it gives flat graphs with
decomposed attention; the dynamo exporter emits opset-18+ functions). Batch is the only dynamic axis.
Every graph passes `deploy.export.opcheck` (TensorRT 10.3 portability) before the directory is published.
fp16 / bf16 exports: the policy's own dtype (`export_onnx` records it as the manifest's `dtype`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from deploy.export.graphs import build_graphs, context_names
from deploy.manifest import MANIFEST_FORMAT, load_manifest
from vla.model.policy import VLAPolicy
from vla.model.sequence import example_batch
from vla.policy_io import PolicyIO

__all__ = ["MANIFEST_FORMAT", "OPSET", "export_onnx", "load_manifest"]
OPSET = 17
EXTERNAL_DATA_THRESHOLD = 16 * 1024 * 1024  # graphs larger than this keep weights in <graph>.onnx.data

_ONNX_DTYPES = {1: "float32", 7: "int64", 9: "bool", 10: "float16", 6: "int32"}


def _io_names(policy: Any) -> dict[str, tuple[list[str], list[str]]]:
    enc_in = ["pixel_values", "prompt_ids", "prompt_mask"] + (["state"] if policy.cfg.use_state else [])
    ctx = list(context_names(policy))  # fusion context: encoder output, decoder graphs' extra inputs
    slots = ["slot_ids", "slot_given"] if policy.cfg.action.prefix_conditioning > 0 else []  # the forced prefix
    return {
        "encoder": (enc_in, ["prefix_embeds", "prefix_mask", *ctx]),
        "parallel": (["prefix_embeds", "prefix_mask", *slots, *ctx], ["action_logits", "action_ids"]),
        "prefill": (["prefix_embeds", "prefix_mask", *ctx],
                    ["logits", "next_ids", "next_position", "cache_k", "cache_v"]),
        "decode_step": (["token_ids", "position_ids", "write_index", "kv_mask", "cache_k", "cache_v", *ctx],
                        ["logits", "next_ids", "cache_k_out", "cache_v_out"]),
    }


def _batch_axis(name: str) -> int:
    return 1 if name.startswith(("cache_", "vis_")) else 0  # caches [layers, B, Hkv, Cap, hd]; vis_k/v [blocks, B, ...]


def _example_args(policy: Any, graphs: dict[str, torch.nn.Module], batch: int) -> dict[str, tuple]:
    """Trace inputs for every graph, chained through the torch graphs themselves (batch > 1 so nothing bakes B)."""
    ex = example_batch(policy.cfg, batch_size=batch, text_vocab=policy.prompt_vocab_size)
    enc = (ex["pixel_values"], ex["prompt_ids"], ex["prompt_mask"]) + ((ex["state"],) if policy.cfg.use_state else ())
    prefix, valid, *ctx = graphs["encoder"](*enc)
    slots: tuple = ()
    if policy.cfg.action.prefix_conditioning > 0:  # row 0 given its first step, row 1 nothing (no shape bakes in)
        given = policy.first_slots(torch.tensor([policy.cfg.action.dim] + [0] * (batch - 1)))  # [B, n]
        slots = (torch.full(given.shape, policy.action_block[0], dtype=torch.long), given)
    args = {"encoder": enc, "parallel": (prefix, valid, *slots, *ctx), "prefill": (prefix, valid, *ctx)}
    _, ids, pos, ck, cv = graphs["prefill"](prefix, valid, *ctx)
    cap = ck.shape[3]
    kv_mask = torch.zeros(batch, cap, dtype=torch.bool)
    kv_mask[:, : valid.shape[1]] = valid
    kv_mask[:, valid.shape[1]] = True
    args["decode_step"] = (ids, pos, torch.tensor([valid.shape[1]], dtype=torch.long), kv_mask, ck, cv, *ctx)
    return args


def _value_info(vi: Any) -> dict[str, Any]:
    t = vi.type.tensor_type
    shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
    return {"name": vi.name, "shape": shape, "dtype": _ONNX_DTYPES.get(t.elem_type, str(t.elem_type))}


def _shape(t: torch.Tensor, name: str) -> list[Any]:
    """Traced tensor -> manifest shape with the batch axis named (every other axis is static)."""
    s: list[Any] = list(t.shape)
    if name != "write_index":
        s[_batch_axis(name)] = "batch"
    return s


def _fix_bool_eyelike(model: Any) -> None:
    """`torch.eye(dtype=bool)` (in `attention_mask_4d`) traces to a bool EyeLike, which ONNX Runtime has no
    kernel for; rewrite it as Cast(int32) -> EyeLike(int32) -> Cast(bool), which every backend runs."""
    from onnx import TensorProto, helper, shape_inference

    inferred = shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    nodes = []
    for node in model.graph.node:
        if node.op_type != "EyeLike" or types.get(node.output[0]) != TensorProto.BOOL:
            nodes.append(node)
            continue
        src, dst = node.input[0], node.output[0]
        nodes += [
            helper.make_node("Cast", [src], [src + "_i32"], to=TensorProto.INT32, name=node.name + "_in"),
            helper.make_node("EyeLike", [src + "_i32"], [dst + "_i32"], dtype=TensorProto.INT32, name=node.name),
            helper.make_node("Cast", [dst + "_i32"], [dst], to=TensorProto.BOOL, name=node.name + "_out"),
        ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _export_graph(module: torch.nn.Module, args: tuple, names: tuple[list[str], list[str]], path: Path,
                  opset: int) -> dict[str, Any]:
    import onnx

    inputs, outputs = names
    dyn = {n: {_batch_axis(n): "batch"} for n in (*inputs, *outputs) if n != "write_index"}
    raw = path.with_suffix(".raw.onnx")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation / tracer warnings
        torch.onnx.export(module, args, str(raw), dynamo=False, opset_version=opset, input_names=inputs,
                          output_names=outputs, dynamic_axes=dyn, do_constant_folding=True)
    model = onnx.load(str(raw))
    for f in raw.parent.iterdir():  # the exporter may have written external data of its own
        if f.name.startswith(raw.name) or f.name == raw.stem + ".data":
            f.unlink()
    _fix_bool_eyelike(model)
    # sized from the initializers, not model.ByteSize(): a protobuf message cannot pass 2 GB (a 7B decoder),
    # so big graphs are only ever serialized with their weights moved to external data
    weights = sum(len(t.raw_data) for t in model.graph.initializer)
    external = weights > EXTERNAL_DATA_THRESHOLD
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    onnx.checker.check_model(str(path))  # by path: works past 2 GB too
    with torch.no_grad():
        results = module(*args)
    return {
        "file": path.name,
        "external_data": path.name + ".data" if external else None,
        "inputs": [{**_value_info(v), "shape": _shape(a, v.name)} for v, a in zip(model.graph.input, args, strict=True)],
        "outputs": [{**_value_info(v), "shape": _shape(r, v.name)} for v, r in zip(model.graph.output, results, strict=True)],
        "ops": sorted({n.op_type for n in model.graph.node}),
    }


def _versions() -> dict[str, str]:
    import onnx
    import transformers

    import vla

    return {"vla": vla.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "onnx": onnx.__version__}


def _policy_dtype(policy: VLAPolicy) -> str:
    """fp32 | fp16 | bf16: the dtype every floating parameter of the policy has (mixed ones are refused)."""
    names = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
    found = {p.dtype for p in policy.parameters() if p.is_floating_point()}
    if len(found) != 1 or next(iter(found)) not in names:
        raise ValueError(f"export_onnx: the policy's parameters have dtypes {sorted(map(str, found))}; cast it to one "
                         "of float32 / float16 / bfloat16 (vla export onnx --dtype)")
    return names[next(iter(found))]


def export_onnx(policy: VLAPolicy, io: PolicyIO, out: str | os.PathLike, opset: int = OPSET,
                max_batch: int = 8) -> dict[str, Any]:
    """Write the export directory for `policy` and its transforms `io` (see module docstring); returns the manifest.

    The graphs compute in the policy's dtype (`VLAPolicy.from_pretrained(dtype=torch.float16)`, or
    `vla export onnx --dtype fp16`): the weights, prefix embeddings and KV caches are then fp16 (a strongly
    typed TensorRT-RTX network builds fp16 from them); pixel_values in and logits out stay float32."""
    from deploy.export.opcheck import check_model
    from vla.io import atomic_directory

    if opset > 19:
        raise ValueError(f"opset={opset}: TensorRT 10.3 portability needs opset <= 19")
    if max_batch < 1:
        raise ValueError(f"max_batch={max_batch}: must be >= 1")
    if io.cfg != policy.cfg:
        raise ValueError("export_onnx: the PolicyIO belongs to another policy config than the weights")
    dtype = _policy_dtype(policy)
    was_training = policy.training
    policy.eval()
    graphs = build_graphs(policy)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # nn.MultiheadAttention's fused kernel has no ONNX form
    try:
        with torch.no_grad():
            args = _example_args(policy, graphs, batch=2)
        names = _io_names(policy)
        cap = int(policy.prefix_len) + int(policy.num_action_tokens)
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "opset": opset,
            "graphs": {},
            "batch": {"min": 1, "opt": 1, "max": int(max_batch)},
            "decoding": policy.cfg.action.decoding,
            "dtype": dtype,  # of the weights and of prefix_embeds / caches; feeds and logits stay float32
            "sequence": {
                "cameras": list(policy.cfg.cameras), "image_size": policy.cfg.vision.image_size,
                "visual_tokens": int(policy.num_visual_tokens), "prompt_len": policy.cfg.text.prompt_len,
                "prefix_len": int(policy.prefix_len), "action_tokens": int(policy.num_action_tokens),
                "cache_capacity": cap, "vocab_size": int(policy.vocab_size),
                "action_id_start": int(policy.action_block[0]),
                "action_id_count": int(policy.cfg.action.num_reserved_ids), "eos_id": policy.eos_id,
                # the ids the graphs' logits cover (their argmax offset): the action block, or all ids
                "score_id_start": int(policy.score_range[0]),
                "score_id_count": int(policy.score_range[1] - policy.score_range[0]),
                "hidden_size": int(policy.hidden_size),
                # where vision meets the LM (vla.config.FusionConfig) and the context tensors the encoder
                # hands to the decoder graphs (none for early fusion)
                "fusion": policy.cfg.fusion.mode, "text_guided": bool(policy.cfg.fusion.text_guided),
                "context": list(context_names(policy)),
                # > 0: the parallel graph takes the forced prefix (slot_ids, slot_given) and conditions on it
                "prefix_conditioning": float(policy.cfg.action.prefix_conditioning),
            },
            "tokenizer": {"dir": "policy", "kind": policy.cfg.text.kind, "pad_id": policy.text_tokenizer.pad_id,
                          "bos_id": policy.text_tokenizer.bos_id, "prompt_template": policy.cfg.prompt_template,
                          "action_tokenizer": policy.action_tokenizer.to_config()},
            "normalization": {"file": "policy/norm_stats.json", "action_mode": policy.cfg.action.norm_mode,
                              "keys": sorted(io.normalizers)},
            "image": {"mean": list(policy.cfg.vision.image_mean), "std": list(policy.cfg.vision.image_std),
                      "channels": int(policy.cfg.vision.channels), "resize": policy.cfg.vision.resize,
                      "layout": "pixel_values float32 [B, C, 3, S, S] = (uint8/255 - mean) / std"
                      + ("; fused towers: [B, C, 6, S, S], the second 3 by the fused tower's mean/std"
                         if policy.cfg.vision.fused is not None else "")},
            "model_config": policy.resolved_config().to_dict(),
            "versions": _versions(),
        }
        with atomic_directory(out) as tmp:
            for name, module in graphs.items():
                entry = _export_graph(module, args[name], names[name], tmp / f"{name}.onnx", opset)
                import onnx

                problems = check_model(onnx.load(str(tmp / entry["file"]), load_external_data=False), entry["file"])
                if problems:
                    raise ValueError("exported graph is not portable to TensorRT 10.3: " + "; ".join(problems))
                manifest["graphs"][name] = entry
            policy.save_pretrained(tmp / "policy", io, state_dict={})  # config + tokenizer + norm stats, no weights
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        policy.train(was_training)
    return manifest
