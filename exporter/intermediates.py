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
    saved with external data under `scratch` (removed afterwards) rather than serialised.
    A model whose batch dim is fixed runs a batch at a time, its values joined on dim 0."""
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
        return _run_in_batches(session, {spec.name: feeds[spec.name] for spec in session.inputs})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_in_batches(session, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    fixed = session.inputs[0].shape[0] if session.inputs and session.inputs[0].shape else None
    samples = len(next(iter(feeds.values()))) if feeds else 0
    if not isinstance(fixed, int) or fixed == samples:
        return session.run(feeds)
    runs = [session.run({k: v[i : i + fixed] for k, v in feeds.items()}) for i in range(0, samples, fixed)]
    # values without a batch dim (shapes, scalars) are the same in every run: the first one's
    return {
        name: np.concatenate([run[name] for run in runs]) if value.ndim and len(value) == fixed else value
        for name, value in runs[0].items()
    }
