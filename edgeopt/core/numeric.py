"""Numeric comparison of a candidate's outputs with a reference's: tolerances and cosine."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgeopt.core.artifact import OutputCheck, Verification


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


def row_cosine(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Cosine similarity per sample (first axis; the rest flattened, in float64).
    Two all-zero rows count as identical, one all-zero row against another as 0."""
    a = np.asarray(expected, np.float64).reshape(len(expected), -1)
    b = np.asarray(actual, np.float64).reshape(len(actual), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    zero = norms == 0
    identical = np.abs(a - b).max(axis=1, initial=0.0) == 0
    return np.where(zero, np.where(identical, 1.0, 0.0), (a * b).sum(axis=1) / np.where(zero, 1.0, norms))
