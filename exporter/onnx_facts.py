"""Facts read off an ONNX file: its inputs and outputs, node and parameter counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
from onnx import helper

from edgeopt.artifact import IO, TensorSpec


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
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
    }


def file_bytes(path: Path) -> int:
    """Bytes on disk: the model file and the external-data files it names."""
    from exporter.onnx_io import external_data_files

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
