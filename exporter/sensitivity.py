"""Which quantized nodes cost the most accuracy, ranked from one pass over samples.

The float model and its quantized model (QDQ, or dynamic, whose replacement nodes keep
the original output names) run side by side with every intermediate exposed.
A node's local error is the error at its output (1 - cosine with the float value)
minus the largest error already present at its inputs: what this node's quantization
adds. One pass ranks every node; quantizing one node at a time would take one
calibration and evaluation per node.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from exporter.intermediates import run_exposed


def quantized_nodes(qdq_model: onnx.ModelProto) -> list[str]:
    """Nodes that read a DequantizeLinear output: the ones quantization changed."""
    dequantized = {o for n in qdq_model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [
        n.name
        for n in qdq_model.graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and dequantized & set(n.input)
    ]


def rank_nodes(
    float_path: Path, qdq_path: Path, feeds: dict[str, np.ndarray], scratch: Path
) -> list[tuple[str, str, float]]:
    """(node name, op type, local error) for each quantized node, most sensitive first."""
    float_model = onnx.load(str(float_path))
    qdq_model = onnx.load(str(qdq_path))
    if any(n.op_type == "QuantizeLinear" for n in qdq_model.graph.node):
        candidates = set(quantized_nodes(qdq_model))
    else:  # dynamic quantization replaces a node by others that produce the same output
        kept_names = {n.name for n in qdq_model.graph.node}
        candidates = {n.name for n in float_model.graph.node if n.name not in kept_names}
    float_values = run_exposed(float_model, feeds, scratch / ".float")
    qdq_values = _as_consumed(qdq_model, run_exposed(qdq_model, feeds, scratch / ".qdq", optimize=False))
    error = {
        name: _error(value, qdq_values[name])
        for name, value in float_values.items()
        if name in qdq_values and value.dtype.kind == "f" and value.shape == qdq_values[name].shape
    }
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in float_model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def error_at(tensor: str) -> float:
        """The error on a tensor; where quantization fused its producer with the next node
        (Conv+Relu), the error on what that next node produces."""
        if tensor in error:
            return error[tensor]
        return max((error.get(o, 0.0) for c in consumers.get(tensor, []) for o in c.output), default=0.0)

    ranked = []
    for node in float_model.graph.node:
        if node.name not in candidates:
            continue
        produced = max((error_at(o) for o in node.output), default=0.0)
        inherited = max((error.get(i, 0.0) for i in node.input), default=0.0)
        ranked.append((node.name, node.op_type, max(produced - inherited, 0.0)))
    return sorted(ranked, key=lambda item: -item[2])


def _as_consumed(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A tensor as its consumers see it: after its QuantizeLinear → DequantizeLinear pair,
    which also applies a Relu the quantizer folded into the activation range."""
    dequantized = {n.input[0]: n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    seen = dict(values)
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.output[0] in dequantized:
            seen[node.input[0]] = values[dequantized[node.output[0]]]
    return seen


def _error(expected: np.ndarray, actual: np.ndarray) -> float:
    from edgeopt.core.numeric import row_cosine

    if not expected.size:  # an empty tensor (a loop's first carried value) carries no error
        return 0.0
    if not expected.ndim:
        expected, actual = expected.reshape(1), actual.reshape(1)
    return float(1.0 - row_cosine(expected, actual).mean())
