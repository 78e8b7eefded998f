"""Which ONNX models OpenVINO can read: those whose ONNX Runtime contrib operators (domain
com.microsoft) its ONNX frontend converts. Stages mark the others not for the OpenVINO
runtimes (Artifact.not_for), with the operators named, so a run lists them as not measured
there instead of failing on them."""

from __future__ import annotations

from collections.abc import Iterable

CONTRIB_DOMAIN = "com.microsoft"

# the com.microsoft operators OpenVINO 2026.4's ONNX frontend has a conversion rule for
# (its src/frontends/onnx/docs/supported_ops.md; tests/runtimes/test_openvino_ops.py asks
# the installed frontend). What edgeopt's stages emit and it reads: the fused graphs'
# Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu, FastGelu, Gelu,
# FusedMatMul, and ONNX Runtime's dynamic INT8 MatMuls. What it does not read: the dynamic
# INT8 of a fused graph, QAttention and QEmbedLayerNormalization.
READABLE_CONTRIB_OPS = frozenset(
    {
        "Attention",
        "BiasAdd",
        "BiasGelu",
        "DequantizeLinear",
        "DynamicQuantizeMatMul",
        "EmbedLayerNormalization",
        "FastGelu",
        "FusedConv",
        "FusedGemm",
        "FusedMatMul",
        "GatherND",
        "Gelu",
        "GroupNorm",
        "GroupQueryAttention",
        "MatMulIntegerToFloat",
        "MatMulNBits",
        "Pad",
        "QLinearAdd",
        "QLinearAveragePool",
        "QLinearConcat",
        "QLinearLeakyRelu",
        "QLinearMul",
        "QLinearReduceMean",
        "QLinearSigmoid",
        "QLinearSoftmax",
        "QLinearWhere",
        "QuantizeLinear",
        "QuickGelu",
        "Range",
        "RotaryEmbedding",
        "SimplifiedLayerNormalization",
        "SkipLayerNormalization",
        "SkipSimplifiedLayerNormalization",
        "Trilu",
    }
)

OPENVINO_RUNTIMES = ("ov-cpu", "ov-cpu-bf16")


def unreadable_ops(nodes: Iterable) -> list[str]:
    """The contrib operators among `nodes` (ONNX NodeProtos) that OpenVINO cannot convert."""
    found = {node.op_type for node in nodes if node.domain == CONTRIB_DOMAIN}
    return sorted(found - READABLE_CONTRIB_OPS)


def openvino_not_for(nodes: Iterable) -> dict[str, str]:
    """Artifact.not_for entries for a model OpenVINO cannot read; {} where it can."""
    ops = unreadable_ops(nodes)
    if not ops:
        return {}
    names = ", ".join(f"{CONTRIB_DOMAIN}.{op}" for op in ops)
    reason = f"ONNX Runtime contrib operators OpenVINO cannot read: {names}"
    return dict.fromkeys(OPENVINO_RUNTIMES, reason)
