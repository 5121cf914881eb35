"""Static portability check of exported graphs against TensorRT 10.3's ONNX parser (JetPack 6).

    problems = check_graph("exports/policy/parallel.onnx")     # [] when the graph is portable
    check_export_dir("exports/policy")                          # raises ValueError listing every problem

Rules: default ONNX domain only (no com.microsoft contrib ops), opset <= 19 (TensorRT 10.3 parses 9..20;
19 keeps a margin and excludes opset-23 `Attention`), only the ops in `TRT_10_3_OPS`, no control flow
(`If`/`Loop`/`Scan`: the parser takes them but they defeat engine optimization and our graphs never need
them), no zero-length dimensions in any initializer or declared input/output shape.

`TRT_10_3_OPS` is the "Supported: Y" column of onnx-tensorrt `docs/operators.md` (release/10.3) for the ops
that matter to transformer graphs; ops absent here are refused even if TensorRT might parse them, so
the list only ever errs on the safe side.
"""

from __future__ import annotations

from pathlib import Path

MAX_OPSET = 19
CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})
TRT_10_3_OPS = frozenset({
    "Abs", "Acos", "Add", "And", "ArgMax", "ArgMin", "Asin", "Atan", "AveragePool", "BatchNormalization",
    "Cast", "CastLike", "Ceil", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose",
    "Cos", "CumSum", "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf",
    "Exp", "Expand", "EyeLike", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gemm",
    "GlobalAveragePool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "GroupNormalization", "HardSigmoid",
    "HardSwish", "Identity", "InstanceNormalization", "IsInf", "IsNaN", "LayerNormalization", "LeakyRelu",
    "Less", "LessOrEqual", "Log", "LogSoftmax", "MatMul", "Max", "MaxPool", "Mean", "Min", "Mod", "Mul",
    "Neg", "Not", "OneHot", "Or", "Pad", "Pow", "PRelu", "QuantizeLinear", "Range", "Reciprocal",
    "ReduceL2", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
    "ReduceSumSquare", "Relu", "Reshape", "Resize", "Round", "ScatterElements", "ScatterND", "Selu", "Shape",
    "Sigmoid", "Sign", "Sin", "Size", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split",
    "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze", "Where", "Xor",
})


def check_model(model, name: str = "graph") -> list[str]:
    """Portability problems of a loaded `onnx.ModelProto` (empty list = portable)."""
    problems = []
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            if imp.version > MAX_OPSET:
                problems.append(f"{name}: opset {imp.version} > {MAX_OPSET}")
        else:
            problems.append(f"{name}: imports non-default domain {imp.domain!r}")
    ops: dict[str, int] = {}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{name}: node {node.name or node.op_type} uses domain {node.domain!r} ({node.op_type})")
            continue
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    for op, count in sorted(ops.items()):
        if op in CONTROL_FLOW:
            problems.append(f"{name}: {count} control-flow {op} node(s)")
        elif op not in TRT_10_3_OPS:
            problems.append(f"{name}: op {op} ({count}x) is not on the TensorRT 10.3 list")
    for init in model.graph.initializer:
        if any(d == 0 for d in init.dims):
            problems.append(f"{name}: initializer {init.name} has a zero-length dim {list(init.dims)}")
    for vi in (*model.graph.input, *model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if any(d.HasField("dim_value") and d.dim_value == 0 for d in dims):
            problems.append(f"{name}: {vi.name} declares a zero-length dim")
    return problems


def check_graph(path: str | Path) -> list[str]:
    import onnx

    path = Path(path)
    return check_model(onnx.load(str(path), load_external_data=False), path.name)


def check_export_dir(directory: str | Path) -> dict[str, list[str]]:
    """Check every graph a manifest lists; ValueError naming all problems, else {graph: ops used}."""
    import json

    import onnx

    directory = Path(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    problems, used = [], {}
    for name, g in manifest["graphs"].items():
        model = onnx.load(str(directory / g["file"]), load_external_data=False)
        problems += check_model(model, g["file"])
        used[name] = sorted({n.op_type for n in model.graph.node})
    if problems:
        raise ValueError(f"{directory}: graphs are not portable to TensorRT 10.3:\n  " + "\n  ".join(problems))
    return used
