"""Numerical comparison of a candidate model's outputs with its reference's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.accuracy import row_cosine
from edgeopt.artifact import Artifact, Format, OutputCheck, Verification
from runtimes.base import SessionOptions


class Tolerance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    atol: float = Field(
        1e-4, ge=0, description="absolute tolerance: |candidate - reference| <= atol + rtol * |reference|"
    )
    rtol: float = Field(1e-4, ge=0, description="relative tolerance, as in numpy.allclose")
    min_cosine: float = Field(
        0.9999, ge=-1, le=1, description="lowest cosine similarity allowed for any sample of any output"
    )


def compare_outputs(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    tolerance: Tolerance,
    reference_name: str,
) -> Verification:
    """Compare every output; the result lists each one, passed or not."""
    checks = []
    for name, expected in reference.items():
        actual = candidate[name]
        samples = expected.shape[0] if expected.ndim else 1
        expected64 = expected.astype(np.float64).reshape(samples, -1)
        actual64 = actual.astype(np.float64).reshape(samples, -1)
        difference = np.abs(actual64 - expected64)
        max_abs = float(difference.max(initial=0.0))
        max_rel = float((difference / (np.abs(expected64) + 1e-12)).max(initial=0.0))
        cosine_min = float(row_cosine(expected64, actual64).min(initial=1.0))
        within = bool(np.all(difference <= tolerance.atol + tolerance.rtol * np.abs(expected64)))
        finite = bool(np.isfinite(actual64).all())
        checks.append(
            OutputCheck(
                name=name,
                max_abs=max_abs,
                max_rel=max_rel,
                cosine_min=cosine_min,
                passed=finite and within and cosine_min >= tolerance.min_cosine,
            )
        )
    first = next(iter(reference.values()))
    return Verification(
        reference=reference_name,
        samples=int(first.shape[0]) if first.ndim else 1,
        atol=tolerance.atol,
        rtol=tolerance.rtol,
        min_cosine=tolerance.min_cosine,
        outputs=tuple(checks),
    )


def describe_failures(verification: Verification) -> str:
    """One line listing every output out of tolerance, with its figures."""
    parts = [
        f"{o.name} max_abs {o.max_abs:.3g} (atol {verification.atol:g}, rtol {verification.rtol:g}), "
        f"min cosine {o.cosine_min:.6f} (min {verification.min_cosine:g})"
        for o in verification.outputs
        if not o.passed
    ]
    return "; ".join(parts)


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
) -> Verification:
    """Run both artifacts over the probe samples and compare every output: models on the
    CPU, engines on TensorRT.

    Each session gets the probe cast to its own input dtypes (an FP16 model with FP16
    inputs gets FP16 feeds). `simulate` runs the candidate in its exact INT8 arithmetic
    (`simulated_options`), for artifacts built for another machine's kernels;
    `simulate_reference` does the same for the reference.
    """
    from runtimes import load

    runtimes = {Format.TORCH: "torch-cpu", Format.ONNX: "ort-cpu", Format.TRT_ENGINE: "trt"}
    outputs = []
    for artifact, simulated in ((reference, simulate_reference), (candidate, simulate)):
        options = simulated_options(artifact.path) if simulated else SessionOptions()
        with load(runtimes[artifact.format], artifact, dataclasses.replace(options, verbose=verbose)) as session:
            feeds = {spec.name: probe[spec.name].astype(spec.dtype, copy=False) for spec in session.inputs}
            outputs.append(session.run(feeds))
    expected, actual = outputs
    simulated = " (INT8 simulated)" if simulate or simulate_reference else ""
    name = f"{reference.stage} {reference.sha256[:12]}{simulated}"
    return compare_outputs(expected, {k: actual[k] for k in expected}, tolerance, reference_name=name)
