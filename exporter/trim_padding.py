"""The `trim_padding` stage: a text model fed sequences padded to a fixed length computes
on the real tokens only.

Serving stacks with static shapes pad every request to one length (128 tokens here), and
a sentence is mostly padding: the pydoc passages `make bench` embeds hold 48.5 real tokens
at the median, the queries 25.5. The trimmed graph reads the longest real sequence of the
batch off the attention mask (the last position any row attends to) and slices every
token input to it, so the padding at the end of the rows is never computed: what a
tokenizer padding each batch to its longest sequence gives, with the fixed-shape inputs
kept. The cost then follows the batch's text.

Exact where the model masks padding out (attention that cannot attend to it, pooling over
the mask) and its outputs have no sequence axis (a sentence embedding, a class): the real
tokens never saw the padded ones. Rows padded at the start are not trimmed (no gain, still
exact). Dynamic INT8 quantizes each call's activations by their range, which then leaves
out the padded tokens' values: an INT8 parent's outputs move a little, toward FP32.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from pydantic import BaseModel, ConfigDict, Field

from edgeopt.core.artifact import Artifact, Precision
from edgeopt.core.context import StageContext
from edgeopt.core.errors import ExportError
from edgeopt.core.numeric import Tolerance
from edgeopt.core.targets import host_target
from exporter.transform import finish, keep_initializers_field, start
from runtimes.base import SessionOptions

# Range and Slice's ends as an input need opset 11
MIN_OPSET = 11
INT8 = (Precision.INT8_QDQ, Precision.INT8_DYNAMIC)


class TrimPaddingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mask: str = Field("attention_mask", description="the input marking real tokens (non-zero) and padding (0)")
    tolerance: Tolerance = Field(
        Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.9999),
        description="agreement with the untrimmed model on the probe (open it for a dynamic INT8 parent, whose "
        "per-call ranges no longer hold the padding)",
    )
    keep_initializers_as_inputs: bool = keep_initializers_field()


def trim_padding(artifact: Artifact, options: TrimPaddingOptions, context: StageContext) -> Artifact:
    legacy, before = start(artifact, MIN_OPSET)
    model = legacy.model
    graph = model.graph
    inputs = {i.name: i for i in graph.input}
    if options.mask not in inputs:
        raise ExportError(f"{artifact.path}: trim_padding reads the mask from input {options.mask!r}; "
                          f"the model's inputs are {', '.join(inputs) or 'none'} (set the mask option)")  # fmt: skip
    sequence = _dims(inputs[options.mask])[1:2]
    if not sequence:
        raise ExportError(f"{artifact.path}: input {options.mask!r} has no sequence axis (batch × tokens expected)")
    tokens = [name for name, value in inputs.items() if _dims(value)[1:2] == sequence]
    per_token = _per_token_outputs(artifact, graph, sequence[0], tokens, context.probe)
    if per_token:
        raise ExportError(
            f"{artifact.path}: output {per_token[0]!r} has the sequence axis, which trimming would shorten: "
            "trim models whose outputs are per sequence (pooled embeddings, classes)"
        )
    trimmed = {name: f"{name}.trimmed" for name in tokens}
    for node in graph.node:
        node.input[:] = [trimmed.get(name, name) for name in node.input]
    nodes = [*_trim_nodes(graph, options.mask, trimmed), *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    simulate = artifact.precision in INT8 and artifact.target not in (None, str(host_target()[0]))
    not_for = {
        runtime: "the sequence length is read off the mask at run time (a data-dependent shape): "
        "not built with TensorRT here"
        for runtime in ("ort-trt", "trt")
    }
    return finish(
        artifact,
        model,
        context,
        stage="trim_padding",
        options=options,
        precision=artifact.precision,
        before=before,
        facts={"trimmed_inputs": tokens},
        simulate=simulate,
        target=artifact.target,
        not_for={**artifact.not_for, **not_for},
        legacy=legacy,
        keep_listed=options.keep_initializers_as_inputs,
    )


def _per_token_outputs(artifact: Artifact, graph, sequence, tokens: list[str], probe: dict) -> list[str]:
    """The outputs with a sequence axis: where the sequence length is fixed, those with a
    dim of that size past the batch; otherwise those whose shape changes when the probe's
    first sample is run one token longer (symbols differ between inputs and outputs)."""
    if isinstance(sequence, int):
        return [o.name for o in graph.output if sequence in _dims(o)[1:]]
    from runtimes.ort import open_model

    session = open_model(artifact.path, "cpu", SessionOptions(threads=1))
    sample = {spec.name: probe[spec.name][:1] for spec in session.inputs}
    longer = {name: np.pad(v, ((0, 0), (0, 1))) if name in tokens else v for name, v in sample.items()}
    short, long = session.run(sample), session.run(longer)
    return [name for name in short if short[name].shape != long[name].shape]


def _dims(value) -> list:
    """Each dim's size or symbol (None where neither is known)."""
    return [d.dim_value or d.dim_param or None for d in value.type.tensor_type.shape.dim]


def _trim_nodes(graph, mask: str, trimmed: dict[str, str]) -> list:
    """length = max(1, the last position of any row whose mask is set); each token
    input sliced to [:, :length]."""

    def constant(name: str, value) -> str:
        graph.initializer.append(numpy_helper.from_array(np.array(value, np.int64), f"trim.{name}"))
        return f"trim.{name}"

    one, axis, shape_of_one, zero = (
        constant("one", 1),
        constant("axis", [1]),
        constant("shape", [1]),
        constant("zero", [0]),
    )
    node = helper.make_node
    nodes = [
        node("Shape", [mask], ["trim.mask_shape"]),
        node("Gather", ["trim.mask_shape", one], ["trim.sequence"], axis=0),
        node("Add", ["trim.sequence", one], ["trim.end"]),
        node("Range", [one, "trim.end", one], ["trim.positions"]),
        node("Cast", [mask], ["trim.attends"], to=TensorProto.BOOL),
        node("Cast", ["trim.attends"], ["trim.attends_01"], to=TensorProto.INT64),
        node("Mul", ["trim.attends_01", "trim.positions"], ["trim.marked"]),
        node("ReduceMax", ["trim.marked"], ["trim.last"], keepdims=0),
        node("Max", ["trim.last", one], ["trim.length"]),
        node("Reshape", ["trim.length", shape_of_one], ["trim.ends"]),
    ]
    nodes += [node("Slice", [name, zero, "trim.ends", axis], [cut]) for name, cut in trimmed.items()]
    for index, item in enumerate(nodes):
        item.name = f"trim_padding/{index}"
    return nodes
