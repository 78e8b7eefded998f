"""Run a model with every node output exposed: the values FP16 conversion checks for
overflow and the sensitivity analysis compares between float and QDQ models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx

from edgeopt.core.onnx_model import EXTERNAL_DATA_BYTES, save_onnx, tensor_bytes
from runtimes.base import SessionOptions


def run_exposed(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], scratch: Path, optimize: bool = True
) -> dict[str, np.ndarray]:
    """Every node output (and graph output) by name. A model past protobuf's 2 GB is
    saved with external data under `scratch` (removed afterwards) rather than serialised."""
    from runtimes.ort import open_model

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    declared = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for output in node.output:
            if output and output not in declared:
                exposed.graph.output.append(onnx.ValueInfoProto(name=output))
                declared.add(output)
    try:
        if tensor_bytes(exposed) > EXTERNAL_DATA_BYTES:
            scratch.mkdir()
            save_onnx(exposed, scratch / "exposed.onnx")
            source: Path | bytes = scratch / "exposed.onnx"
        else:
            source = exposed.SerializeToString()
        # optimize=False evaluates QDQ pairs in float: the quantization itself, not this CPU's kernels
        session = open_model(source, "cpu", SessionOptions(optimize=optimize))
        return session.run({spec.name: feeds[spec.name] for spec in session.inputs})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
