"""Accuracy of a session on held-out data: top-1 against labels, and agreement with
the reference model's outputs (max abs error, cosine, top-1 agreement, and for
embeddings of queries and documents, the overlap of the top-10 documents per query).

An output row holding NaN or infinity (a runtime's arithmetic overflowed) agrees with
nothing: its cosine is 0, it retrieves nothing, and the largest error is taken over the
finite rows, so results.json stays strict JSON and the row is scored as the failure it is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeopt.core.data import Split
from edgeopt.core.numeric import row_cosine
from runtimes.base import Session


@dataclass(frozen=True)
class Accuracy:
    samples: int
    top1: float | None
    agreement_top1: float | None
    cosine_mean: float | None
    cosine_min: float | None
    max_abs: float | None
    overlap_at_10: float | None = None


RETRIEVED = 10


def predict(session: Session, split: Split, batch_size: int) -> dict[str, np.ndarray]:
    """Every output of the session over the whole split, concatenated."""
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(split), batch_size):
        outputs = session.run(split.take(start, start + batch_size))
        for name, value in outputs.items():
            chunks.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in chunks.items()}


def score(
    outputs: dict[str, np.ndarray],
    labels: np.ndarray | None,
    reference: dict[str, np.ndarray] | None,
    queries: int = 0,
) -> Accuracy:
    """Scores the first output: top-1 where labels exist, agreement where a reference exists;
    where the first `queries` samples are queries (embeddings), retrieval agreement instead
    of top-1 agreement."""
    name, first = next(iter(outputs.items()))
    samples = len(first)
    actual = first.astype(np.float64).reshape(samples, -1)
    finite = np.isfinite(actual).all(axis=1)
    top1 = None
    if labels is not None and first.ndim == 2:
        top1 = float(((first.argmax(axis=1) == labels) & finite).mean())
    if reference is None:
        return Accuracy(samples, top1, None, None, None, None)
    expected = reference[name].astype(np.float64).reshape(samples, -1)
    cosine = np.where(finite, row_cosine(expected, np.where(finite[:, None], actual, 0.0)), 0.0)
    agreement = None
    if first.ndim == 2 and not queries:
        agreement = float(((expected.argmax(axis=1) == actual.argmax(axis=1)) & finite).mean())
    overlap = retrieval_overlap(expected, actual, queries) if queries else None
    return Accuracy(
        samples=samples,
        top1=top1,
        agreement_top1=agreement,
        cosine_mean=float(cosine.mean()),
        cosine_min=float(cosine.min()),
        max_abs=float(np.abs(expected[finite] - actual[finite]).max()) if finite.any() else None,
        overlap_at_10=overlap,
    )


def retrieval_overlap(expected: np.ndarray, actual: np.ndarray, queries: int, k: int = RETRIEVED) -> float:
    """Mean share of each query's top-k documents (by cosine) that both embeddings retrieve;
    rows [0, queries) are queries, the rest documents. A query that is not a number
    retrieves nothing, and a document that is not one is never retrieved."""

    count = min(k, len(expected) - queries)

    def top_k(embeddings: np.ndarray) -> list[set[int]]:
        finite = np.isfinite(embeddings).all(axis=1)
        embeddings = np.where(finite[:, None], embeddings, 0.0)
        unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        similarity = unit[:queries] @ unit[queries:].T
        ranked = np.argsort(-similarity, axis=1, kind="stable")
        documents = finite[queries:]
        return [
            set(row[documents[row]][:count]) if ok else set() for row, ok in zip(ranked, finite[:queries], strict=True)
        ]

    hits = [len(a & b) for a, b in zip(top_k(expected), top_k(actual), strict=True)]
    return float(np.mean(hits) / count)
