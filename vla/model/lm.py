"""The causal-LM families the fast paths know, in one table: which run the lean decoding layer loop
(`vla.model.decoding`) and which the ONNX exporter re-composes (`deploy.export.graphs.DecoderCore`).

    family = lm_family("llama")          # LMFamily(layer_loop=True, export=True, why_not_export=None)
    export_unsupported("qwen3")          # reason string, or None when the exporter supports it

Any `AutoModelForCausalLM` trains and decodes through the full `lm(...)` call; this table only gates
the two paths that re-implement part of the model's forward.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LMFamily:
    # decoder is embed -> rotary_emb once -> layers(hidden, mask, position_embeddings, cache) -> norm, the
    # loop in LlamaModel.forward that the layer-loop step runs itself
    layer_loop: bool
    # decoder layer is exactly RMSNorm -> q/k/v proj (+RoPE) -> attention -> o_proj -> residual -> RMSNorm ->
    # MLP -> residual, which the exported graphs re-compose with explicit masks and a fixed-capacity cache
    export: bool
    why_not_export: str | None = None


LM_FAMILIES: dict[str, LMFamily] = {
    "llama": LMFamily(layer_loop=True, export=True),
    "qwen2": LMFamily(layer_loop=True, export=True),
    "mistral": LMFamily(layer_loop=True, export=True),
    "qwen3": LMFamily(layer_loop=True, export=False, why_not_export="its attention has q/k RMSNorms"),
}


def lm_family(model_type: str) -> LMFamily | None:
    return LM_FAMILIES.get(model_type)


def export_unsupported(model_type: str) -> str | None:
    """None if the ONNX exporter supports this LM type, else why not."""
    fam = LM_FAMILIES.get(model_type)
    if fam is None:
        supported = sorted(k for k, f in LM_FAMILIES.items() if f.export)
        return f"LM type {model_type!r} is not one the exporter knows (supported: {supported})"
    if not fam.export:
        return f"LM type {model_type!r}: {fam.why_not_export}"
    return None
