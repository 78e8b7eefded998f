"""The report's compression section, on a hand-made results document."""

from __future__ import annotations

from bench.report.compression import compression_section


def _row(variant: str, p50_ms: float, top1: float) -> dict:
    return {
        "variant": variant,
        "runtime": "ort-cpu",
        "batch": 32,
        "threads": 1,
        "latency": {"p50_ms": p50_ms},
        "accuracy": {"top1": top1},
    }


def _artifact(sha: str, parent: str | None, stage: str, facts: dict) -> dict:
    return {"sha256": sha, "parent": parent, "stage": stage, "facts": facts}


DOCUMENT = {
    "artifacts": {
        "model": _artifact("a", None, "load_model", {}),
        "onnx": _artifact("b", "a", "export_onnx", {}),
        "sparse": _artifact(
            "c",
            "a",
            "prune_magnitude",
            {
                "parameters": 100,
                "zero_parameters": 70,
                "compression": {
                    "method": "unstructured magnitude pruning",
                    "dense_kernels": True,
                    "summary": "70% zero",
                },
            },
        ),
        "sparse-onnx": _artifact("d", "c", "export_onnx", {}),
        "pruned": _artifact("e", "a", "prune_channels", {"compression": {"method": "structured", "summary": "half"}}),
        "pruned-onnx": _artifact("f", "e", "export_onnx", {}),
    },
    "rows": [_row("onnx", 2.0, 0.98), _row("sparse-onnx", 2.0, 0.97), _row("pruned-onnx", 0.8, 0.975)],
}


def test_compression_section_says_sparsity_buys_no_speed_on_dense_kernels():
    text = "\n".join(compression_section(DOCUMENT))

    assert "**pruned** (prune_channels): half." in text
    assert "**sparse: no speed from unstructured magnitude pruning** (70% of parameters zero)" in text
    assert "sparse-onnx on ort-cpu batch 32 × 1 threads 2.000 ms" in text


def test_compression_section_front_leaves_out_the_dominated():
    front = next(line for line in compression_section(DOCUMENT) if line.startswith("- ort-cpu:"))

    assert front == "- ort-cpu: pruned-onnx (0.800 ms, 97.50%), onnx (2.000 ms, 98.00%)"


def test_compression_section_is_empty_without_compressed_artifacts():
    assert compression_section({"artifacts": {"model": _artifact("a", None, "load_model", {})}, "rows": []}) == []
