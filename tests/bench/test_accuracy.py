import numpy as np
import pytest

from bench.accuracy import predict, score
from runtimes import load


def test_score_top1_and_agreement_on_known_values():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    labels = np.array([0, 1, 1, 1])
    reference = {"y": np.array([[2.0, 1.0], [0.0, 3.0], [0.0, 1.0], [0.0, 1.0]], np.float32)}
    result = score({"y": logits}, labels, reference)
    assert result.top1 == 0.75
    assert result.agreement_top1 == 0.75
    assert result.max_abs == 1.0
    assert result.cosine_min == pytest.approx(0.0)


def test_score_without_labels_or_reference_measures_nothing():
    result = score({"y": np.ones((3, 2), np.float32)}, None, None)
    assert result.top1 is None and result.agreement_top1 is None and result.samples == 3


def test_digits_cnn_export_keeps_held_out_top1(digits_cnn, digits_onnx, digits):
    with load("torch-cpu", digits_cnn) as torch_session, load("ort-cpu", digits_onnx) as ort_session:
        reference = predict(torch_session, digits.test, 64)
        exported = predict(ort_session, digits.test, 100)
    torch_score = score(reference, digits.test.labels, None)
    onnx_score = score(exported, digits.test.labels, reference)
    assert torch_score.top1 >= 0.95
    assert onnx_score.top1 == torch_score.top1
    assert onnx_score.agreement_top1 == 1.0 and onnx_score.cosine_min > 0.9999


def test_rows_that_are_not_numbers_agree_with_nothing_and_keep_the_record_strict_json(recwarn):
    import json

    reference = {"y": np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [3.0, 1.0]], np.float32)}
    broken = reference["y"].copy()
    broken[1] = np.nan  # a runtime's overflow: the whole row is lost
    broken[3, 0] = np.inf
    result = score({"y": broken}, np.array([0, 1, 0, 0]), reference)
    assert result.top1 == 0.5 and result.agreement_top1 == 0.5  # rows 0 and 2 only
    assert result.cosine_mean == pytest.approx(0.5) and result.cosine_min == 0.0 and result.max_abs == 0.0
    json.dumps(result.__dict__, allow_nan=False)
    everything = score({"y": np.full((4, 2), np.nan, np.float32)}, None, reference)
    assert everything.cosine_mean == 0.0 and everything.max_abs is None
    assert not recwarn.list  # nothing on the user's stderr


def test_embeddings_that_are_not_numbers_retrieve_nothing_and_are_never_retrieved():
    from bench.accuracy import retrieval_overlap

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(24, 8))
    broken = embeddings.copy()
    broken[0] = np.nan  # a query: none of its documents count
    assert retrieval_overlap(embeddings, broken, 4, k=5) == pytest.approx(0.75)
    far = embeddings.copy()
    far[4:] = np.nan  # every document: nothing is retrieved
    assert retrieval_overlap(embeddings, far, 4, k=5) == 0.0
