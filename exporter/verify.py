"""Numerical comparison of a candidate model's outputs with its reference's."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.accuracy import row_cosine
from edgeopt.artifact import Artifact, Format, OutputCheck, Verification


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
    inputs gets FP16 feeds). `simulate` runs the candidate unoptimized: the QDQ semantics,
    for artifacts meant for another runtime's INT8 kernels (TensorRT); `simulate_reference`
    does the same for the reference.
    """
    from runtimes import load
    from runtimes.base import SessionOptions

    runtimes = {Format.TORCH: "torch-cpu", Format.ONNX: "ort-cpu", Format.TRT_ENGINE: "trt"}
    outputs = []
    for artifact, optimize in ((reference, not simulate_reference), (candidate, not simulate)):
        with load(runtimes[artifact.format], artifact, SessionOptions(verbose=verbose, optimize=optimize)) as session:
            feeds = {spec.name: probe[spec.name].astype(spec.dtype, copy=False) for spec in session.inputs}
            outputs.append(session.run(feeds))
    expected, actual = outputs
    simulated = " (QDQ simulated)" if simulate or simulate_reference else ""
    name = f"{reference.stage} {reference.sha256[:12]}{simulated}"
    return compare_outputs(expected, {k: actual[k] for k in expected}, tolerance, reference_name=name)
