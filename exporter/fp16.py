"""The `convert_fp16` stage: float tensors to FP16, verified against the FP32 model.

Kept in FP32: ONNX Runtime's list of ops without FP16 kernels or with poor FP16
accuracy, any op the user names, and every node whose values on the probe samples
come near FP16's largest finite value (65504), which would overflow to inf.
"""

from __future__ import annotations

import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict, Field

from edgeopt.core.artifact import Artifact, Precision
from edgeopt.core.context import StageContext
from edgeopt.core.errors import ExportError, first_line
from edgeopt.core.numeric import Tolerance
from edgeopt.core.onnx_model import load_onnx, sort_topologically
from exporter.intermediates import run_exposed
from exporter.transform import finish, keep_initializers_field, start

FP16_MAX = 65504.0


class ConvertFp16Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_io_types: bool = Field(
        True, description="keep inputs and outputs FP32, so callers feed and read the same dtypes"
    )
    keep_ops: tuple[str, ...] = Field((), description="op types to keep in FP32 besides ONNX Runtime's default list")
    overflow_margin: float = Field(
        0.5, gt=0, le=1, description="keep a node in FP32 if its values on the probe exceed this fraction of 65504"
    )
    tolerance: Tolerance = Field(
        Tolerance(atol=0.05, rtol=0.01, min_cosine=0.999),
        description="how close the outputs must stay to the FP32 model's",
    )
    keep_initializers_as_inputs: bool = keep_initializers_field()


def convert_fp16(artifact: Artifact, options: ConvertFp16Options, context: StageContext) -> Artifact:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    if artifact.precision is not Precision.FP32:
        raise ExportError(f"{artifact.path}: convert_fp16 takes an fp32 model, this one is {artifact.precision}")
    legacy, before = start(artifact)  # before the converter edits the model in place
    model = legacy.model
    overflowing = _overflowing_nodes(artifact, model, context, options.overflow_margin * FP16_MAX)
    # shape inference on the weight-less skeleton: the converter's own serialises the whole
    # model, which fails past protobuf's 2 GB
    skeleton = onnx.shape_inference.infer_shapes(load_onnx(artifact.path, load_weights=False))
    del model.graph.value_info[:]
    model.graph.value_info.extend(skeleton.graph.value_info)
    try:
        converted = convert_float_to_float16(
            model,
            keep_io_types=options.keep_io_types,
            op_block_list=[*DEFAULT_OP_BLOCK_LIST, *options.keep_ops],
            node_block_list=overflowing,
            disable_shape_infer=True,
        )
    except Exception as err:  # the converter's shape inference and graph edits raise many types
        raise ExportError(f"{artifact.path}: FP16 conversion failed: {first_line(err)}") from err
    _drop_round_trip_casts(converted.graph)
    sort_topologically(converted.graph)  # the converter appends the input Casts at the end
    # the converter leaves stale intermediate types (FP16 where a kept node yields FP32);
    # they are optional, and strict shape inference rejects them
    del converted.graph.value_info[:]
    kept = sorted(n.op_type for n in model.graph.node if n.op_type in (*DEFAULT_OP_BLOCK_LIST, *options.keep_ops))
    facts = {"fp32_nodes_overflow": overflowing, "fp32_ops_listed": kept}
    return finish(
        artifact,
        converted,
        context,
        stage="convert_fp16",
        options=options,
        precision=Precision.FP16,
        before=before,
        facts=facts,
        full_check=True,
        legacy=legacy,
        keep_listed=options.keep_initializers_as_inputs,
    )


def _overflowing_nodes(artifact: Artifact, model: onnx.ModelProto, context: StageContext, limit: float) -> list[str]:
    """Names of nodes that produce or consume a float tensor beyond `limit` on the probe
    samples, found by running the FP32 model with every intermediate exposed as an output."""
    for index, node in enumerate(model.graph.node):
        if not node.name:  # node_block_list works by name
            node.name = f"{node.op_type}_{index}"
    producers = {output: node.name for node in model.graph.node for output in node.output}
    values = run_exposed(model, context.probe, context.out_dir / ".probe")
    too_large = {
        name
        for name, value in values.items()
        if name in producers
        and isinstance(value, np.ndarray)
        and value.dtype.kind == "f"
        and value.size
        and float(np.nanmax(np.abs(value))) > limit
    }
    # such a tensor must never be cast to FP16: its producer and every consumer stay FP32
    consumers = {node.name for node in model.graph.node if too_large.intersection(node.input)}
    return sorted({producers[name] for name in too_large} | consumers)


def _cast_to(node: onnx.NodeProto) -> int | None:
    if node.op_type != "Cast":
        return None
    return next((a.i for a in node.attribute if a.name == "to"), None)


def _drop_round_trip_casts(graph: onnx.GraphProto) -> None:
    """Remove FP32 → FP16 → FP32 Cast pairs. The converter puts one on every edge out of
    a node kept in FP32, even when the next node is kept in FP32 too, and the round trip
    turns a value beyond 65504 into inf: the very thing keeping the nodes was for."""
    graph_outputs = {o.name for o in graph.output}
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    renamed: dict[str, str] = {}
    dropped: set[int] = set()
    for node in graph.node:
        half = node.output[0] if _cast_to(node) == onnx.TensorProto.FLOAT16 else None
        following = users.get(half, []) if half else []
        if (
            not following
            or half in graph_outputs
            or any(_cast_to(user) != onnx.TensorProto.FLOAT or user.output[0] in graph_outputs for user in following)
        ):
            continue
        dropped.add(id(node))
        for user in following:
            dropped.add(id(user))
            renamed[user.output[0]] = node.input[0]
    kept = [node for node in graph.node if id(node) not in dropped]
    for node in kept:
        for index, name in enumerate(node.input):
            while name in renamed:
                name = renamed[name]
            node.input[index] = name
    del graph.node[:]
    graph.node.extend(kept)
