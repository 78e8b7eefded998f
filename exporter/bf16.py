"""The `convert_bf16` stage: weights stored in BF16, verified by BF16's arithmetic.

BF16 keeps FP32's exponent (nothing overflows that FP32 holds) and 8 bits of mantissa.
The artifact stores every weight matrix (the initializers of two dims or more) in BF16,
each read through a Cast to FP32, the compressed form OpenVINO gives its own FP16 IR.
So it runs on every runtime, and where one computes in BF16 (`ov-cpu-bf16` on a CPU
with AVX-512-BF16 or AMX) its float layers run in BF16; elsewhere they run in FP32 on
the BF16 weights. ONNX Runtime has no BF16 kernels on the CPU (MatMul, Add, Conv: none),
so a graph typed BF16 throughout would run nowhere here.

The verification does not depend on this CPU having BF16: it runs a copy of the artifact
in which every float value a node produces, and every float input, is rounded to BF16
(round to nearest even, as the hardware converts), with FP32 arithmetic inside each
operator, which is how BF16 dot products accumulate (AVX-512-BF16's and AMX's). That is
BF16 storage of every activation, as a BF16 runtime keeps them between layers.
"""

from __future__ import annotations

import ml_dtypes
import onnx
from onnx import TensorProto, numpy_helper
from pydantic import BaseModel, ConfigDict, Field

from edgeopt.core.artifact import Artifact, Precision
from edgeopt.core.context import StageContext
from edgeopt.core.errors import ExportError
from edgeopt.core.numeric import Tolerance
from edgeopt.core.onnx_model import load_onnx, sort_topologically
from exporter.transform import finish, keep_initializers_field, start


class ConvertBf16Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # BF16 keeps 8 bits of mantissa (a rounding costs up to 0.4%) and rounds every activation:
    # ResNet-18's logits, 20 layers deep, came out at min cosine 0.9987, max_abs 0.44
    tolerance: Tolerance = Field(
        Tolerance(atol=0.5, rtol=0.05, min_cosine=0.995),
        description="how close the outputs, in BF16 arithmetic, must stay to the FP32 model's",
    )
    keep_initializers_as_inputs: bool = keep_initializers_field()


def convert_bf16(artifact: Artifact, options: ConvertBf16Options, context: StageContext) -> Artifact:
    if artifact.precision is not Precision.FP32:
        raise ExportError(f"{artifact.path}: convert_bf16 takes an fp32 model, this one is {artifact.precision}")
    legacy, before = start(artifact)
    model = legacy.model
    stored = store_weights_bf16(model.graph)
    if not stored:
        raise ExportError(f"{artifact.path}: convert_bf16 found no float weight matrix to store in BF16")
    return finish(
        artifact,
        model,
        context,
        stage="convert_bf16",
        options=options,
        precision=Precision.BF16,
        before=before,
        facts={"bf16_weights": len(stored)},
        full_check=True,
        legacy=legacy,
        keep_listed=options.keep_initializers_as_inputs,
        simulation=(bf16_arithmetic(model, _float_values(artifact) - set(stored)), "BF16 arithmetic"),
    )


def store_weights_bf16(graph: onnx.GraphProto) -> list[str]:
    """Each FP32 initializer of two dims or more (not one listed as a graph input, which a
    caller may override) stored as BF16 under `<name>.bf16`, with a Cast at the top of the
    graph giving its consumers the FP32 tensor of the old name. Returns the names."""
    listed = {i.name for i in graph.input}
    stored, casts = [], []
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type != TensorProto.FLOAT or len(tensor.dims) < 2 or tensor.name in listed:
            continue
        name = tensor.name
        half = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(ml_dtypes.bfloat16), f"{name}.bf16")
        graph.initializer[index].CopyFrom(half)
        casts.append(onnx.helper.make_node("Cast", [half.name], [name], name=half.name, to=TensorProto.FLOAT))
        stored.append(name)
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    return stored


def bf16_arithmetic(model: onnx.ModelProto, float_values: set[str]) -> onnx.ModelProto:
    """A copy of `model` in which every value of `float_values` (FP32 graph inputs and node
    outputs) is rounded to BF16 before anything reads it."""
    simulated = onnx.ModelProto()
    simulated.CopyFrom(model)
    graph = simulated.graph
    outputs = {o.name for o in graph.output}
    inputs = [i.name for i in graph.input if i.name in float_values and i.name not in outputs]
    readers = {name: f"{name}.rounded" for name in inputs}  # a graph input keeps its name
    produced = {}  # a node output: its producer writes `.fp32`, the rounded value takes the name
    for node in graph.node:
        node.input[:] = [readers.get(name, name) for name in node.input]
        for index, name in enumerate(node.output):
            if name in float_values:
                produced[name] = node.output[index] = f"{name}.fp32"
    rounding = []
    for name, (source, target) in {
        **{name: (name, readers[name]) for name in inputs},
        **{name: (raw, name) for name, raw in produced.items()},
    }.items():
        rounding += [
            onnx.helper.make_node("Cast", [source], [f"{name}.as_bf16"], to=TensorProto.BFLOAT16),
            onnx.helper.make_node("Cast", [f"{name}.as_bf16"], [target], to=TensorProto.FLOAT),
        ]
    graph.node.extend(rounding)
    sort_topologically(graph)
    del graph.value_info[:]
    return simulated


def _float_values(source: Artifact) -> set[str]:
    """The FP32 values of the source model, graph inputs and node outputs, as shape
    inference types them on its weight-less skeleton (which fits under protobuf's 2 GB)."""
    inferred = onnx.shape_inference.infer_shapes(load_onnx(source.path, load_weights=False))
    typed = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return {v.name for v in typed if v.type.tensor_type.elem_type == TensorProto.FLOAT}
