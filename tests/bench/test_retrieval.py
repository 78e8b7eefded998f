"""Retrieval agreement between two sets of embeddings (queries first, then documents)."""

import numpy as np

from bench.accuracy import retrieval_overlap, score


def test_retrieval_overlap_is_one_for_the_same_ranking_and_counts_shared_documents():
    rng = np.random.default_rng(0)
    documents = rng.normal(size=(30, 8))
    queries = documents[:4] + 0.01 * rng.normal(size=(4, 8))
    embeddings = np.concatenate([queries, documents])
    assert retrieval_overlap(embeddings, embeddings * 3.0, 4) == 1.0  # scale does not change cosine
    reversed_queries = np.concatenate([-queries, documents])  # the least similar documents come first
    assert retrieval_overlap(embeddings, reversed_queries, 4) < 0.5
    assert retrieval_overlap(embeddings, reversed_queries, 4, k=30) == 1.0  # every document retrieved


def test_score_reports_overlap_instead_of_argmax_agreement_for_embeddings():
    rng = np.random.default_rng(1)
    reference = {"embedding": rng.normal(size=(20, 16)).astype(np.float32)}
    noisy = {"embedding": reference["embedding"] + 0.05 * rng.normal(size=(20, 16)).astype(np.float32)}
    result = score(noisy, None, reference, queries=5)
    assert result.agreement_top1 is None and 0.0 < result.overlap_at_10 <= 1.0
    assert score(noisy, None, reference).overlap_at_10 is None
