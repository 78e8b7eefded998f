"""Hugging Face model directories as sources: a small BERT saved with save_pretrained
(safetensors) and a tokenizer learnt from the corpus; the packaged MiniLM under `slow`."""

import json

import numpy as np
import pytest
import yaml

from edgeopt.cli import main
from edgeopt.core.errors import ModelLoadError
from edgeopt.huggingface import check_directory, encoder


def test_directory_without_safetensors_is_refused_in_one_line(bert_dir, tmp_path):
    (tmp_path / "config.json").write_text((bert_dir / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match=r"no model\.safetensors \(pytorch_model\.bin is a pickle"):
        check_directory(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="no model_type"):
        check_directory(tmp_path)


def test_sentence_embedding_is_the_masked_mean_normalised(bert_dir):
    import torch

    pooled = encoder(str(bert_dir), "mean", pretrained=True)
    tokens = encoder(str(bert_dir), "none", pretrained=True)
    ids = torch.randint(0, 1000, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.int64)
    mask[1, 5:] = 0
    segments = torch.zeros_like(ids)
    with torch.inference_mode():
        embedding = pooled(ids, mask, segments)
        hidden = tokens(ids, mask, segments)
    expected = hidden[1, :5].mean(dim=0)
    torch.testing.assert_close(embedding[1], expected / expected.norm())
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2))


def test_recipe_runs_a_huggingface_encoder_end_to_end(bert_dir, tmp_path):
    """Default data is Python's documentation through the model's own tokenizer; the report
    scores cosine and retrieval overlap; fusion, smoothing, padding removal and a budgeted dynamic INT8 run."""
    fused_cpu_options = {
        "num_heads": 4,
        "hidden_size": 64,
        "skip_layer_norm": False,
        "gelu_approximation": True,
        "tolerance": {"atol": 0.001, "rtol": 0.01, "min_cosine": 0.9999},
    }
    recipe = {
        "name": "hf",
        "model": {"huggingface": str(bert_dir)},
        "data": {"text": {"max_length": 32, "samples": 40, "queries": 10, "calibration": 32, "validation": 32}},
        "variants": {
            "onnx": {"stage": "export_onnx", "options": {"exporter": "torchscript", "opset": 17}},
            "fused": {"stage": "optimize_transformer", "from": "onnx", "options": {"num_heads": 4, "hidden_size": 64}},
            "fused-cpu": {"stage": "optimize_transformer", "from": "onnx", "options": fused_cpu_options},
            "trimmed": {"stage": "trim_padding", "from": "fused-cpu"},
            "smoothed": {"stage": "smooth_activations", "options": {"samples": 32}},
            "smoothed-packed": {
                "stage": "remove_padding",
                "from": "smoothed",
                "options": {"attention": "per_row"},
                "runtimes": [],
            },
            "onnx-packed": {"stage": "export_onnx", "from": "smoothed-packed", "options": {"exporter": "torchscript"}},
            # the per-row attention's Loop through the optimizer and a budgeted quantizer
            "packed-fused": {
                "stage": "optimize_transformer",
                "from": "onnx-packed",
                "options": fused_cpu_options,
                "runtimes": [],
            },
            "int8-packed": {
                "stage": "quantize_dynamic",
                "from": "onnx-packed",
                "options": {"per_channel": True, "budget": {"metric": "cosine", "max_drop": 0.00001}},
            },
            "onnx-smoothed": {"stage": "export_onnx", "from": "smoothed", "options": {"exporter": "torchscript"}},
            "int8": {
                "stage": "quantize_dynamic",
                "from": "onnx-smoothed",
                "options": {"per_channel": True, "budget": {"metric": "cosine", "max_drop": 0.00001}},
            },
        },
        "runtimes": ["ort-cpu"],
        "bench": {"min_runs": 2, "min_duration_s": 0, "warmup_runs": 0, "rounds": 2, "server": None},
    }
    path = tmp_path / "hf.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["run", str(path), "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    artifacts = results["artifacts"]
    assert [spec["name"] for spec in artifacts["onnx"]["io"]["inputs"]] == [
        "input_ids",
        "attention_mask",
        "token_type_ids",
    ]
    assert artifacts["onnx"]["io"]["outputs"][0]["name"] == "sentence_embedding"
    assert artifacts["fused"]["facts"]["fused"]["Attention"] == 2
    assert "FastGelu" not in artifacts["fused"]["facts"]["fused"]
    cpu_fusions = artifacts["fused-cpu"]["facts"]["fused"]
    assert (
        cpu_fusions["Attention"] == 2 and cpu_fusions["FastGelu"] == 2 and "SkipLayerNormalization" not in cpu_fusions
    )
    assert artifacts["fused-cpu"]["verification"]["passed"]
    assert artifacts["smoothed"]["verification"]["passed"]
    assert artifacts["smoothed"]["facts"]["compression"]["layers"] == 13  # 6 Linears per layer, and the pooler
    budget = artifacts["int8"]["facts"]["budget"]
    assert budget["metric"] == "cosine" and budget["checked_on"].startswith("validation")
    assert budget["met"] == (budget["float"] - budget["int8"] <= 0.00001)
    assert budget["kept_float"] and budget["kept_float"][0]["op_type"] == "MatMul"
    rows = {row["variant"]: row["accuracy"] for row in results["rows"]}
    # the smoothed encoder run on the real tokens alone answers as the smoothed one padded
    assert artifacts["smoothed-packed"]["facts"]["padding_removed"]["encoders"] == ["body"]
    assert rows["onnx-packed"]["overlap_at_10"] == rows["onnx-smoothed"]["overlap_at_10"]
    assert rows["onnx-packed"]["cosine_min"] == pytest.approx(rows["onnx-smoothed"]["cosine_min"], abs=1e-5)
    assert artifacts["packed-fused"]["verification"]["passed"]
    assert artifacts["packed-fused"]["facts"]["fused"] == {"FastGelu": 2, "LayerNormalization": 5}
    packed_budget = artifacts["int8-packed"]["facts"]["budget"]
    assert artifacts["int8-packed"]["verification"]["passed"] and packed_budget["steps"]
    assert {k["op_type"] for k in packed_budget["kept_float"]} <= {"Gemm", "MatMul"}
    # the fused graph cut to each batch's longest passage answers as the untrimmed one
    assert artifacts["trimmed"]["verification"]["passed"]
    assert rows["trimmed"]["overlap_at_10"] == rows["fused-cpu"]["overlap_at_10"]
    assert rows["trimmed"]["cosine_min"] == pytest.approx(rows["fused-cpu"]["cosine_min"], abs=1e-5)
    assert rows["onnx"]["overlap_at_10"] == 1.0 and rows["onnx"]["agreement_top1"] is None
    assert 0.5 < rows["int8"]["overlap_at_10"] <= 1.0 and rows["int8"]["cosine_mean"] > 0.99
    report = (out / "report.md").read_text()
    assert "overlap@10" in report and "cosine mean" in report


@pytest.mark.slow
def test_packaged_minilm_matches_sentence_transformers():
    """The built-in all-MiniLM-L6-v2: our pooling head gives sentence-transformers' embeddings."""
    import torch
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from edgeopt.huggingface import packaged_directory

    directory = packaged_directory("all-minilm-l6-v2")
    sentences = ["A for loop iterates over the items of a sequence.", "Exceptions are raised with raise."]
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(sentences)
    feeds = [torch.tensor([getattr(e, key) for e in encodings]) for key in ("ids", "attention_mask", "type_ids")]
    with torch.inference_mode():
        ours = encoder(str(directory), "mean", pretrained=True)(*feeds).numpy()
    theirs = SentenceTransformer(str(directory), device="cpu").encode(sentences)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
