"""ONNX models: loaded and saved safely (models over protobuf's 2 GB limit included), checked
before any work, and the facts read off them (inputs and outputs, node and parameter counts).

External-data locations must stay inside the model's folder: no absolute paths, no
`..`, no symlinks leading out. Models whose weights pass EXTERNAL_DATA_BYTES are saved
with their tensors in one `<name>.data` file beside them. Older models (IR version 3,
opset 7 and up) are modernized for the tools that transform them (`modernize`).
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import helper
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from edgeopt.core.artifact import IO, TensorSpec, file_sha256
from edgeopt.core.errors import ExportError, ModelLoadError, first_line

# protobuf cannot serialise a message over 2 GB; stay well below it.
EXTERNAL_DATA_BYTES = 1_500_000_000
# IR version 4 (ONNX 1.4) let initializers stop being graph inputs; under IR version 3
# every weight had to be listed as one, which the simplifiers and quantizers drop.
INITIALIZERS_APART_IR = 4


def external_data_files(path: Path, model: onnx.ModelProto) -> list[Path]:
    """The external-data files a model names, each checked to lie inside its folder."""
    folder = path.parent.resolve()
    files = []
    for location in sorted({ExternalDataInfo(t).location for t in _all_tensors(model) if uses_external_data(t)}):
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ModelLoadError(
                f"{path}: external data '{location}' points outside the model's folder; refusing to read it"
            )
        if not target.is_file():
            raise ModelLoadError(f"{path}: external data file '{location}' is missing")
        files.append(target)
    return files


def load_onnx(path: Path, load_weights: bool = True) -> onnx.ModelProto:
    """Parse a model, check where its external data lives, then load the weights."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # DecodeError, OSError... for files that are not ONNX
        raise ModelLoadError(f"{path}: not a valid ONNX model: {first_line(err)}") from err
    files = external_data_files(path, model)
    if load_weights and files:
        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except Exception as err:  # truncated data files raise ValueError/OSError
            raise ModelLoadError(f"{path}: cannot read its external data: {first_line(err)}") from err
    return model


def save_onnx(model: onnx.ModelProto, path: Path) -> None:
    """Save a model; large ones keep their weights in `<name>.data` beside it."""
    external = tensor_bytes(model) > EXTERNAL_DATA_BYTES
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location=f"{path.name}.data",
        size_threshold=1024,
    )


def check_onnx(path: Path, full: bool = False) -> None:
    """The ONNX checker, by path so that models over 2 GB are checked too; `full` adds
    strict shape inference (types must agree everywhere)."""
    onnx.checker.check_model(str(path), full_check=full)


def tensor_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in _all_tensors(model))


def _all_tensors(model: onnx.ModelProto):
    yield from model.graph.initializer
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t


def check_declared_inputs(path: Path, inputs) -> None:
    """Every model input has a name and sane dims: positive sizes or symbolic names."""
    if not inputs:
        raise ModelLoadError(f"{path}: the graph declares no inputs (weights listed as inputs do not count)")
    for spec in inputs:
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int) and dim <= 0:
                raise ModelLoadError(
                    f"{path}: input '{spec.name}' declares dim {axis} as {dim}; sizes must be positive or named"
                )
        if spec.dtype == "object":
            raise ModelLoadError(f"{path}: input '{spec.name}' has type {spec.dtype}, which edgeopt cannot feed")


# the domains onnx itself defines; the checker finds their unknown operators
_ONNX_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training")


def check_operators(path: Path, model: onnx.ModelProto) -> None:
    """Every node outside ONNX's own domains runs an operator ONNX Runtime defines, or a
    function the model holds (ONNX's own domains are the checker's)."""
    functions = {(function.domain, function.name) for function in model.functions}
    foreign = [n for n in model.graph.node if n.domain not in _ONNX_DOMAINS and (n.domain, n.op_type) not in functions]
    if not foreign:
        return
    import os

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before onnxruntime's first import
    from onnxruntime.capi.onnxruntime_pybind11_state import get_all_operator_schema

    known = {(schema.domain, schema.name) for schema in get_all_operator_schema()}
    for node in foreign:
        if (node.domain, node.op_type) not in known:
            raise ModelLoadError(
                f"{path}: node '{node.name or node.op_type}' runs operator {node.domain}:{node.op_type}, "
                "which neither ONNX nor ONNX Runtime defines"
            )


def check_wiring(path: Path, graph: onnx.GraphProto) -> None:
    """Every tensor a node reads, and every graph output, is made by something: a node,
    a graph input or an initializer (the checker reports this as a sorting problem)."""
    made = {value.name for value in graph.input} | {tensor.name for tensor in graph.initializer} | {""}
    made |= {name for node in graph.node for name in node.output}
    for node in graph.node:
        for name in node.input:
            if name not in made:
                raise ModelLoadError(
                    f"{path}: tensor '{name}', an input of node '{node.name or node.op_type}' ({node.op_type}), "
                    "is produced by nothing (no node, graph input or initializer)"
                )
    for output in graph.output:
        if output.name not in made:
            raise ModelLoadError(f"{path}: graph output '{output.name}' is produced by nothing")


# element types packed below a byte: their data sizes are not a count times an item size
_PACKED = {getattr(onnx.TensorProto, name, -1) for name in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")}


def check_initializer_sizes(path: Path, graph: onnx.GraphProto) -> None:
    """Each initializer holds as many values as its dims say (external data is checked
    when it is read)."""
    for tensor in graph.initializer:
        if uses_external_data(tensor) or tensor.data_type in _PACKED | {0, onnx.TensorProto.STRING}:
            continue
        count = int(_numel(tensor.dims))
        try:
            itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
            field = helper.tensor_dtype_to_field(tensor.data_type)
        except (KeyError, ValueError):  # an element type this onnx does not know: the checker says so
            continue
        if tensor.raw_data:
            held, expected, unit = len(tensor.raw_data), count * itemsize, "bytes"
        else:
            per_value = 2 if tensor.data_type in (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128) else 1
            held, expected, unit = len(getattr(tensor, field)), count * per_value, "values"
        if held != expected:
            raise ModelLoadError(
                f"{path}: initializer '{tensor.name}' declares dims {list(tensor.dims)} ({expected} {unit}) "
                f"but its data holds {held} {unit}; the file is damaged or was written wrongly"
            )


def load_checked(path: Path, load_weights: bool = True) -> onnx.ModelProto:
    """A user's model, validated before any work: parses, external data confined, passes
    the ONNX checker, a known opset, and inputs edgeopt can feed."""
    model = load_onnx(path, load_weights=load_weights)
    check_operators(path, model)
    check_wiring(path, model.graph)
    check_initializer_sizes(path, model.graph)
    try:
        check_onnx(path)
    except Exception as err:  # onnx.checker.ValidationError and friends
        raise ModelLoadError(f"{path}: not a valid ONNX model: {first_line(err)}") from err
    newest = onnx.defs.onnx_opset_version()
    opset = onnx_opset(model)
    if opset is None or not 1 <= opset <= newest:
        raise ModelLoadError(
            f"{path}: opset {opset} is not one this onnx knows (1..{newest}); re-export it with a supported opset"
        )
    check_declared_inputs(path, graph_io(model).inputs)
    return model


def has_subgraphs(model: onnx.ModelProto) -> bool:
    """Whether a node of the main graph holds a graph (Loop, If, Scan). ONNX Runtime's symbolic
    shape inference copies every weight into each subgraph's inference: in its transformer
    optimizer, 38.3 s against 1.4 s without it on the pruned MiniLM with a Loop per layer."""
    return any(
        attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        for node in model.graph.node
        for attribute in node.attribute
    )


def onnx_opset(model: onnx.ModelProto) -> int | None:
    """The model's opset of the default (ai.onnx) domain."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


@dataclass(frozen=True)
class Modernized:
    """A model as today's tools take it. upgraded: what was raised, for the report ({} when
    nothing was). listed_weights: the weights the source also listed as graph inputs."""

    model: onnx.ModelProto
    upgraded: dict = field(default_factory=dict)
    listed_weights: tuple[str, ...] = ()


def modernize(model: onnx.ModelProto, source: Path, opset: int | None = None) -> Modernized:
    """Edit a model into the form the simplifiers, FP16 converter and quantizers take:
    weights listed as graph inputs (IR version 3 required it) become plain initializers,
    the opset is raised to `opset` where lower (onnx's version converter), and the IR
    version to what the opset needs, at least 4."""
    weights = {tensor.name for tensor in model.graph.initializer}
    listed = tuple(value.name for value in model.graph.input if value.name in weights)
    upgraded: dict = {"weights_unlisted": len(listed)} if listed else {}
    if listed:
        inputs = [value for value in model.graph.input if value.name not in weights]
        del model.graph.input[:]
        model.graph.input.extend(inputs)
    ir_version, old_opset = model.ir_version, onnx_opset(model)
    model.ir_version = max(ir_version, INITIALIZERS_APART_IR)
    if opset is not None and old_opset is not None and old_opset < opset:
        from onnx import version_converter

        try:
            model = version_converter.convert_version(model, opset)
        except Exception as err:  # the converter lacks adapters for some ops and raises their errors
            raise ExportError(f"{source}: cannot raise opset {old_opset} to {opset}: {first_line(err)}") from err
        upgraded["opset"] = [old_opset, opset]
    model.ir_version = max(model.ir_version, helper.find_min_ir_version_for(model.opset_import, ignore_unknown=True))
    if model.ir_version != ir_version:
        upgraded["ir_version"] = [ir_version, model.ir_version]
    return Modernized(model, upgraded, listed)


def list_as_inputs(model: onnx.ModelProto, names: tuple[str, ...]) -> int:
    """List these initializers as graph inputs again (overridable at run time), those of
    them the model still holds; returns how many."""
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    present = {value.name for value in model.graph.input}
    relisted = [initializers[name] for name in names if name in initializers and name not in present]
    model.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in relisted)
    return len(relisted)


def describe_upgrade(upgraded: dict) -> str:
    """What modernize raised, in words: `IR version 3 → 7, opset 9 → 13, 12 weights no
    longer graph inputs`; empty when nothing was."""
    parts = [
        f"{label} {upgraded[key][0]} → {upgraded[key][1]}"
        for key, label in (("ir_version", "IR version"), ("opset", "opset"))
        if key in upgraded
    ]
    if upgraded.get("weights_unlisted"):
        kept = upgraded.get("weights_kept_listed", 0)
        parts.append(
            f"{kept} weights kept as graph inputs"
            if kept
            else f"{upgraded['weights_unlisted']} weights no longer graph inputs"
        )
    return ", ".join(parts)


def tensor_specs(values) -> tuple[TensorSpec, ...]:
    specs = []
    for value in values:
        tensor_type = value.type.tensor_type
        dims = tuple(d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in tensor_type.shape.dim)
        try:
            dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
        except (KeyError, ValueError):  # not a tensor (a sequence, a map) or an unknown element type
            dtype = "object"
        specs.append(TensorSpec(value.name, dims, dtype))
    return tuple(specs)


def graph_io(model: onnx.ModelProto) -> IO:
    """Graph inputs that are not initializers (older exports list weights as inputs)."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    return IO(tensor_specs(inputs), tensor_specs(model.graph.output))


def model_facts(model: onnx.ModelProto, path: Path) -> dict:
    """Numbers recorded on an ONNX artifact and shown in the report."""
    size_bytes = file_bytes(path)
    parameters = sum(int(_numel(t.dims)) for t in model.graph.initializer)
    return {
        "size_bytes": size_bytes,
        "node_count": len(model.graph.node),
        "op_histogram": dict(sorted(Counter(n.op_type for n in model.graph.node).items())),
        "parameters": parameters,
        "opset": onnx_opset(model),
    }


def file_bytes(path: Path) -> int:
    """Bytes on disk: the model file and the external-data files it names."""
    on_disk = onnx.load(str(path), load_external_data=False)
    return path.stat().st_size + sum(f.stat().st_size for f in external_data_files(path, on_disk))


def input_facts(model: onnx.ModelProto, path: Path) -> dict:
    """A transform's record of what it started from, for the report's before → after."""
    facts = model_facts(model, path)
    return {key: facts[key] for key in ("node_count", "op_histogram", "parameters", "size_bytes")}


def _numel(dims) -> int:
    count = 1
    for d in dims:
        count *= d
    return count


def node_modules(model: onnx.ModelProto) -> dict[str, str]:
    """ONNX node name → the PyTorch module it came from, as the exporter recorded it:
    dynamo in `pkg.torch.onnx.name_scopes`, the TorchScript exporter in the node name."""
    import ast

    modules = {}
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        if scopes:
            names = ast.literal_eval(scopes)  # a list of strings; literal_eval evaluates no code
            module = next((name for name in reversed(names[:-1]) if name), None)
        else:
            path = node.name.strip("/").split("/")[:-1] if node.name.startswith("/") else []
            module = path[-1] if path else None
        if module:
            modules[node.name] = module
    return modules


def onnx_source_sha256(path: Path) -> str:
    """Hash an ONNX file and the external-data files it names (each confined to its folder)."""
    digest = hashlib.sha256(file_sha256(path).encode())
    for data_file in external_data_files(path, load_onnx(path, load_weights=False)):
        digest.update(data_file.name.encode() + file_sha256(data_file).encode())
    return digest.hexdigest()


def sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder the nodes so each comes after the producers of what it reads, the values its
    subgraphs read from this graph included (ONNX Runtime's optimizer sorts without those), keeping
    the given order where it already holds (Kahn's algorithm: no recursion on deep graphs)."""
    nodes = list(graph.node)
    producer = {output: index for index, node in enumerate(nodes) for output in node.output if output}
    waiting = [{producer[name] for name in _reads(node) if name in producer} for node in nodes]
    readers: dict[int, list[int]] = {}
    for index, needs in enumerate(waiting):
        for need in needs:
            readers.setdefault(need, []).append(index)
    ready = deque(index for index, needs in enumerate(waiting) if not needs)
    ordered = []
    while ready:
        index = ready.popleft()
        ordered.append(nodes[index])
        for reader in readers.get(index, []):
            waiting[reader].discard(index)
            if not waiting[reader]:
                ready.append(reader)
    del graph.node[:]
    graph.node.extend(ordered)


def _reads(node: onnx.NodeProto) -> set[str]:
    """The values a node reads: its inputs, and what its subgraphs take from the scopes around them."""
    names = set(node.input)
    for attribute in node.attribute:
        for subgraph in [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else attribute.graphs:
            defined = {value.name for value in subgraph.input} | {tensor.name for tensor in subgraph.initializer}
            defined |= {output for inner in subgraph.node for output in inner.output}
            names |= {name for inner in subgraph.node for name in _reads(inner)} - defined
    return names
