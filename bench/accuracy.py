"""Accuracy of a session on held-out data: top-1 against labels, and agreement with
the reference model's outputs (max abs error, cosine, top-1 agreement)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeopt.data import Split
from runtimes.base import Session


@dataclass(frozen=True)
class Accuracy:
    samples: int
    top1: float | None
    agreement_top1: float | None
    cosine_mean: float | None
    cosine_min: float | None
    max_abs: float | None


def predict(session: Session, split: Split, batch_size: int) -> dict[str, np.ndarray]:
    """Every output of the session over the whole split, concatenated."""
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(split), batch_size):
        outputs = session.run(split.take(start, start + batch_size))
        for name, value in outputs.items():
            chunks.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in chunks.items()}


def score(
    outputs: dict[str, np.ndarray], labels: np.ndarray | None, reference: dict[str, np.ndarray] | None
) -> Accuracy:
    """Scores the first output: top-1 where labels exist, agreement where a reference exists."""
    name, first = next(iter(outputs.items()))
    samples = len(first)
    top1 = float((first.argmax(axis=1) == labels).mean()) if labels is not None and first.ndim == 2 else None
    if reference is None:
        return Accuracy(samples, top1, None, None, None, None)
    expected = reference[name].astype(np.float64).reshape(samples, -1)
    actual = first.astype(np.float64).reshape(samples, -1)
    cosine = row_cosine(expected, actual)
    agreement = float((expected.argmax(axis=1) == actual.argmax(axis=1)).mean()) if first.ndim == 2 else None
    return Accuracy(
        samples=samples,
        top1=top1,
        agreement_top1=agreement,
        cosine_mean=float(cosine.mean()),
        cosine_min=float(cosine.min()),
        max_abs=float(np.abs(expected - actual).max()),
    )


def row_cosine(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Cosine similarity per sample (first axis; the rest flattened, in float64).
    Two all-zero rows count as identical, one all-zero row against another as 0."""
    a = np.asarray(expected, np.float64).reshape(len(expected), -1)
    b = np.asarray(actual, np.float64).reshape(len(actual), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    zero = norms == 0
    identical = np.abs(a - b).max(axis=1, initial=0.0) == 0
    return np.where(zero, np.where(identical, 1.0, 0.0), (a * b).sum(axis=1) / np.where(zero, 1.0, norms))
