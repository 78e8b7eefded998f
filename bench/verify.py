"""Verification of an artifact against its reference: both run on the probe samples (models
on the CPU, OpenVINO IR on OpenVINO, engines on TensorRT) and every output compared within
tolerance."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgeopt.core.artifact import Artifact, Format, Verification
from edgeopt.core.numeric import Tolerance, compare_outputs
from runtimes.base import SessionOptions


def simulated_options(path: Path) -> SessionOptions:
    """Run an INT8 model in its exact arithmetic rather than with this CPU's kernels, for
    artifacts built for another machine: QDQ pairs evaluated in float (no fusions), and
    integer ops (dynamic INT8) with ONNX Runtime's x64 precision mode, which moves s8
    weights to u8 so AVX2's 16-bit sums cannot saturate."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    if any(node.op_type == "QuantizeLinear" for node in graph.node):
        return SessionOptions(optimize=False)
    return SessionOptions(exact_int8=True)


def verify_against(
    reference: Artifact,
    candidate: Artifact,
    probe: dict[str, np.ndarray],
    tolerance: Tolerance,
    verbose: bool = False,
    simulate: bool = False,
    simulate_reference: bool = False,
    arithmetic: str | None = None,
) -> Verification:
    """Run both artifacts over the probe samples and compare every output: models on the
    CPU, engines on TensorRT.

    Each session gets the probe cast to its own input dtypes (an FP16 model with FP16
    inputs gets FP16 feeds), a batch at a time where its batch dim is fixed. `simulate` runs the candidate in its exact INT8 arithmetic
    (`simulated_options`), for artifacts built for another machine's kernels;
    `simulate_reference` does the same for the reference. `arithmetic` names what a candidate
    model built to simulate another precision's arithmetic computes (the record says so).
    """
    from runtimes import load

    runtimes = {Format.TORCH: "torch-cpu", Format.ONNX: "ort-cpu", Format.TRT_ENGINE: "trt", Format.OPENVINO: "ov-cpu"}
    outputs = []
    for artifact, simulated in ((reference, simulate_reference), (candidate, simulate)):
        options = simulated_options(artifact.path) if simulated else SessionOptions()
        with load(runtimes[artifact.format], artifact, dataclasses.replace(options, verbose=verbose)) as session:
            feeds = {spec.name: probe[spec.name].astype(spec.dtype, copy=False) for spec in session.inputs}
            outputs.append(_run_in_batches(session, feeds))
    expected, actual = outputs
    what = arithmetic or ("INT8" if simulate or simulate_reference else None)
    name = f"{reference.stage} {reference.sha256[:12]}" + (f" ({what} simulated)" if what else "")
    return compare_outputs(expected, {k: actual[k] for k in expected}, tolerance, reference_name=name)


def _run_in_batches(session, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All the feeds at once, or a batch at a time for a model whose batch dim is fixed
    (older exports take one sample: [1, 3, 224, 224])."""
    from bench.accuracy import predict
    from edgeopt.core.data import Split

    fixed = session.inputs[0].shape[0] if session.inputs and session.inputs[0].shape else None
    samples = len(next(iter(feeds.values()))) if feeds else 0
    if not isinstance(fixed, int) or fixed == samples:
        return session.run(feeds)
    return predict(session, Split(feeds, None), fixed)
