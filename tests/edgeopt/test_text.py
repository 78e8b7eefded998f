"""Text from Python's own documentation, tokenised with a WordPiece tokenizer trained on it."""

import json

import numpy as np
import pytest
import yaml

from edgeopt.cli import main
from edgeopt.core.artifact import TensorSpec
from edgeopt.core.errors import DataError
from edgeopt.text import TextSource, load_text, pydoc_passages
from tests.conftest import BERT_INPUTS


def test_pydoc_passages_are_real_paragraphs():
    passages = pydoc_passages()
    assert len(passages) > 1000 and all(len(p.split()) >= 12 for p in passages)
    assert any("for" in p and "loop" in p for p in passages)


def test_text_is_tokenised_seeded_and_padded(tokenizer_dir):
    source = TextSource(tokenizer=tokenizer_dir, max_length=32, samples=20, queries=5, seed=3)
    dataset = load_text(source, tokenizer_dir, BERT_INPUTS, None)
    split = dataset.test
    ids, mask = split.inputs["input_ids"], split.inputs["attention_mask"]
    assert ids.shape == (25, 32) and ids.dtype == np.int64 and (ids < 1000).all() and split.queries == 5
    assert (ids[:, 0] == 2).all() and set(np.unique(mask)) <= {0, 1}
    assert (ids[mask == 0] == 0).all()  # padding is [PAD]
    assert mask[:5].sum(axis=1).mean() < mask[5:].sum(axis=1).mean()  # a query is one sentence
    assert len(dataset.train) == 256 and len(dataset.validation) == 128
    everything = np.concatenate([dataset.train.inputs["input_ids"], dataset.validation.inputs["input_ids"], ids])
    # disjoint passages; cut to 32 tokens, a few share their opening words
    assert len({row.tobytes() for row in everything}) > 0.9 * len(everything)
    again = load_text(source, tokenizer_dir, BERT_INPUTS, None).test
    np.testing.assert_array_equal(again.inputs["input_ids"], ids)
    other = load_text(source.model_copy(update={"seed": 4}), tokenizer_dir, BERT_INPUTS, None).test
    assert not np.array_equal(other.inputs["input_ids"], ids)


def test_text_errors_are_one_line(tokenizer_dir, tmp_path):
    with pytest.raises(DataError, match="also takes pixel_values"):
        load_text(
            TextSource(tokenizer=tokenizer_dir), tokenizer_dir, (TensorSpec("pixel_values", (1, 3), "float32"),), None
        )
    with pytest.raises(DataError, match=r"not a readable tokenizer\.json"):
        load_text(TextSource(tokenizer=tmp_path), tmp_path, BERT_INPUTS, None)
    with pytest.raises(DataError, match="needs a tokenizer"):
        load_text(TextSource(), tmp_path, BERT_INPUTS, None)
    with pytest.raises(DataError, match="fewer than the"):
        load_text(TextSource(tokenizer=tokenizer_dir, samples=5000), tokenizer_dir, BERT_INPUTS, None)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="holds no text"):
        load_text(TextSource(tokenizer=tokenizer_dir, corpus="empty.txt"), tmp_path, BERT_INPUTS, None)


def test_recipe_calibrates_an_encoder_on_text(tokenizer_dir, factory_dir, tmp_path):
    recipe = {
        "name": "text",
        "model": {"factory": "factories:tiny_bert"},
        "inputs": [
            {"name": n, "shape": ["batch", "sequence"], "dtype": "int64"} for n in (s.name for s in BERT_INPUTS)
        ],
        "data": {
            "text": {"tokenizer": str(tokenizer_dir), "max_length": 32, "samples": 48, "queries": 8, "calibration": 32}
        },
        "variants": {
            "onnx": {"stage": "export_onnx"},
            "int8": {"stage": "quantize_int8", "from": "onnx", "options": {"samples": 32}},
        },
        "runtimes": ["ort-cpu"],
        "bench": {"min_runs": 2, "min_duration_s": 0, "warmup_runs": 0},
    }
    (factory_dir / "text.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["run", str(factory_dir / "text.yaml"), "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["artifacts"]["int8"]["facts"]["calibration_samples"] == 32
    assert {r["variant"] for r in results["rows"]} == {"onnx", "int8"}
