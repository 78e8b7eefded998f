"""The recommendation per target (device, runtime, threads): what it picks, what it compares
the pick with (the source model's plain export on the same target), and how a rule keeps
a row out."""

import pytest

from bench import recommend as recommend_module
from bench.recommend import baseline_variant, recommend, target_of
from bench.report.summary import excluded_text


def artifact(stage: str, parent: str | None, size_bytes: int = 1000) -> dict:
    return {"stage": stage, "parent": parent, "sha256": "", "facts": {"size_bytes": size_bytes}}


def artifacts(*entries: tuple[str, str, str | None]) -> dict:
    """(name, stage, parent name) → records whose parent is the parent's sha256."""
    records = {}
    for name, stage, parent in entries:
        records[name] = {**artifact(stage, records[parent]["sha256"] if parent else None), "sha256": f"sha-{name}"}
    return records


def row(variant: str, runtime: str, p90: float, top1: float, batch: int = 1, threads: int = 1, **extra) -> dict:
    latency = {"p50_ms": p90 * 0.9, "p90_ms": p90, "throughput_per_s": batch * 1000 / p90}
    accuracy = {"top1": top1, "agreement_top1": None, "cosine_mean": None}
    return {
        "variant": variant,
        "runtime": runtime,
        "precision": "int8-qdq" if "int8" in variant else "fp32",
        "batch": batch,
        "threads": threads,
        "latency": latency,
        "accuracy": accuracy,
        "peak_rss_mb": 200.0,
        **extra,
    }


RECORDS = artifacts(
    ("model", "load_model", None),
    ("pruned", "prune_channels", "model"),
    ("onnx", "export_onnx", "model"),
    ("onnx-again", "export_onnx", "model"),
    ("pruned-onnx", "export_onnx", "pruned"),
    ("int8", "quantize_int8", "onnx"),
    ("engine", "build_trt", "onnx"),
)


def single_stream(picks: list[dict]) -> dict:
    return {(p["device"], p["runtime"], p["threads"]): p for p in picks if p["scenario"] == "single-stream"}


def test_recommend_compares_the_pick_with_the_source_models_plain_export_on_the_same_target():
    rows = [
        row("model", "torch-cpu", 10.0, 0.97),
        row("pruned", "torch-cpu", 6.0, 0.965),
        row("onnx", "ort-cpu", 5.0, 0.97),
        row("onnx-again", "ort-cpu", 4.8, 0.97),
        row("pruned-onnx", "ort-cpu", 2.5, 0.965),  # the fastest float artifact: not what the user started from
        row("int8", "ort-cpu", 2.0, 0.968),
    ]
    picks = single_stream(recommend(rows, RECORDS, max_drop=0.01))
    ort = picks[("local", "ort-cpu", 1)]
    assert ort["pick"]["variant"] == "int8" and ort["baseline"]["variant"] == "onnx"
    assert ort["pick"]["speedup"] == pytest.approx(5.0 / 2.0)
    assert ort["runner_up"]["variant"] == "pruned-onnx" and ort["runner_up"]["speedup"] == pytest.approx(2.0)
    assert ort["pick"]["accuracy_change"] == pytest.approx(-0.002)
    assert ort["pick"]["size_bytes"] == 1000 and ort["pick"]["peak_rss_mb"] == 200.0
    assert "2.50× as fast as the source model's plain export (onnx)" in ort["text"]
    torch = picks[("local", "torch-cpu", 1)]  # a torch runtime runs no export: the source model itself
    assert torch["pick"]["variant"] == "pruned" and torch["baseline"]["variant"] == "model"
    assert "1.67× as fast as the source model (model)" in torch["text"]


def test_baseline_is_the_export_else_the_source_else_an_engine_built_from_the_export():
    assert baseline_variant(RECORDS, {"onnx", "onnx-again", "model", "int8"}) == "onnx"
    assert baseline_variant(RECORDS, {"model", "pruned"}) == "model"
    assert baseline_variant(RECORDS, {"engine", "int8"}) == "engine"
    assert baseline_variant(RECORDS, {"int8"}) is None
    onnx_source = artifacts(("model", "load_onnx", None), ("int8", "quantize_int8", "model"))
    assert baseline_variant(onnx_source, {"model", "int8"}) == "model"


def test_recommend_keys_targets_by_device_runtime_and_threads():
    rows = [
        row("onnx", "ort-cpu", 5.0, 0.97),
        row("int8", "ort-cpu", 2.0, 0.97),
        row("onnx", "ort-cpu", 2.5, 0.97, threads=4),
        row("int8", "ort-cpu", 3.0, 0.97, threads=4),
        row("onnx", "ort-cpu", 9.0, 0.97, device="pi5"),
        row("int8", "ort-cpu", 4.0, 0.97, device="pi5"),
    ]
    assert target_of(rows[0]) == ("local", "ort-cpu", 1) and target_of(rows[-1]) == ("pi5", "ort-cpu", 1)
    picks = single_stream(recommend(rows, RECORDS, max_drop=0.01))
    assert list(picks) == [("local", "ort-cpu", 1), ("local", "ort-cpu", 4), ("pi5", "ort-cpu", 1)]
    assert [p["pick"]["variant"] for p in picks.values()] == ["int8", "onnx", "int8"]
    assert picks[("pi5", "ort-cpu", 1)]["text"].startswith("pi5 · ort-cpu · 1 thread, single-stream: int8")


def test_recommend_leaves_out_what_is_over_the_budget_and_says_so():
    rows = [row("onnx", "ort-cpu", 5.0, 0.97), row("int8", "ort-cpu", 2.0, 0.90), row("model", "torch-cpu", 9, 0.97)]
    picks = recommend(rows, RECORDS, max_drop=0.01)
    ort = single_stream(picks)[("local", "ort-cpu", 1)]
    assert ort["pick"]["variant"] == "onnx" and ort["runner_up"] is None
    assert ort["excluded"] == [{"variant": "int8", "reason": "over the accuracy budget"}]
    assert "the source model's plain export itself" in ort["text"]
    alone = recommend([row("onnx", "ort-cpu", 5.0, 0.5), row("model", "torch-cpu", 9, 0.97)], RECORDS, 0.01)
    assert single_stream(alone)[("local", "ort-cpu", 1)]["pick"] is None


def test_offline_picks_the_best_throughput_over_the_batch_sweep():
    rows = [
        row("onnx", "ort-cpu", 5.0, 0.97),
        row("onnx", "ort-cpu", 20.0, 0.97, batch=8),  # 400/s
        row("int8", "ort-cpu", 2.0, 0.97),  # 500/s
        row("int8", "ort-cpu", 10.0, 0.97, batch=8),  # 800/s
    ]
    offline = next(p for p in recommend(rows, RECORDS, 0.01) if p["scenario"] == "offline")
    assert offline["pick"]["variant"] == "int8" and offline["pick"]["batch"] == 8
    assert offline["baseline"]["batch"] == 8 and offline["pick"]["speedup"] == pytest.approx(2.0)
    assert offline["runner_up"]["variant"] == "onnx"


def test_a_rule_added_to_rules_keeps_its_rows_out_with_its_reason(monkeypatch):
    """The place a later rule goes (e.g. an INT8 artifact no faster than its float parent)."""

    def no_int8(row: dict, context) -> str | None:
        names = {a["sha256"]: name for name, a in context.artifacts.items()}
        parent = names.get(context.artifacts[row["variant"]]["parent"])
        return "an INT8 rule" if "int8" in row["variant"] and parent == "onnx" else None

    monkeypatch.setattr(recommend_module, "RULES", (*recommend_module.RULES, no_int8))
    rows = [row("model", "torch-cpu", 9.0, 0.97), row("onnx", "ort-cpu", 5.0, 0.97), row("int8", "ort-cpu", 2.0, 0.97)]
    ort = single_stream(recommend(rows, RECORDS, 0.01))[("local", "ort-cpu", 1)]
    assert ort["pick"]["variant"] == "onnx" and ort["excluded"] == [{"variant": "int8", "reason": "an INT8 rule"}]


def with_precision(records: dict) -> dict:
    """The records as results.json holds them: each with its precision."""
    return {name: {**r, "precision": "int8-qdq" if "int8" in name else "fp32"} for name, r in records.items()}


CHAIN = with_precision(
    artifacts(
        ("model", "load_model", None),
        ("onnx", "export_onnx", "model"),
        ("simplified", "simplify", "onnx"),
        ("int8", "quantize_int8", "simplified"),
        ("int8-nncf", "quantize_nncf", "onnx"),
    )
)


def test_an_int8_artifact_no_faster_than_its_float_parent_is_not_recommended_where_it_runs():
    """On ort-cpu INT8 is faster; on ov-cpu (OpenVINO's INT8 on a CPU without VNNI) it is
    slower than its FP32 parent, so the float parent is the pick there, and the summary says why."""
    rows = [
        row("onnx", "ort-cpu", 5.0, 0.97),
        row("int8", "ort-cpu", 2.0, 0.97),
        row("onnx", "ov-cpu", 5.0, 0.97),
        row("simplified", "ov-cpu", 5.0, 0.97),
        row("int8", "ov-cpu", 5.5, 0.97),
        row("int8-nncf", "ov-cpu", 4.9, 0.97),  # 2% faster than onnx: inside the noise
    ]
    picks = single_stream(recommend(rows, CHAIN, 0.01))
    assert picks[("local", "ort-cpu", 1)]["pick"]["variant"] == "int8"
    ov = picks[("local", "ov-cpu", 1)]
    assert ov["pick"]["variant"] in ("onnx", "simplified")
    reason = "INT8 less than 5% faster than its float parent"
    assert ov["excluded"] == [{"variant": "int8", "reason": reason}, {"variant": "int8-nncf", "reason": reason}]
    # int8 is the pick on ort-cpu: the line says where the rule kept it out; int8-nncf runs on ov-cpu only
    assert excluded_text(list(picks.values()), rows) == f"Not considered: int8 on local · ov-cpu, int8-nncf ({reason})."


def test_the_not_considered_line_names_thread_counts_only_where_they_differ():
    reason = "INT8 less than 5% faster than its float parent"
    rows = [
        row("onnx", "ov-cpu", 5.0, 0.97, threads=1),
        row("int8", "ov-cpu", 5.5, 0.97, threads=1),  # slower on one thread
        row("onnx", "ov-cpu", 3.0, 0.97, threads=2),
        row("int8", "ov-cpu", 2.0, 0.97, threads=2),  # faster on two
    ]
    picks = recommend(rows, CHAIN, 0.01)
    assert excluded_text(picks, rows) == f"Not considered: int8 on local · ov-cpu · 1 thread ({reason})."


def test_the_int8_rule_compares_the_nearest_float_ancestor_measured_there_at_the_same_batch():
    rows = [
        row("onnx", "ov-cpu", 5.0, 0.97),
        row("int8", "ov-cpu", 4.0, 0.97),  # 1.25× the export, but its parent simplified is measured
        row("simplified", "ov-cpu", 4.1, 0.97),
        row("onnx", "ov-cpu", 40.0, 0.97, batch=8),
        row("int8", "ov-cpu", 20.0, 0.97, batch=8),
        row("simplified", "ov-cpu", 40.0, 0.97, batch=8),
    ]
    picks = recommend(rows, CHAIN, 0.01)
    single = next(p for p in picks if p["scenario"] == "single-stream")
    assert single["pick"]["variant"] == "simplified" and [e["variant"] for e in single["excluded"]] == ["int8"]
    offline = next(p for p in picks if p["scenario"] == "offline")  # 2× at batch 8: the offline pick
    assert offline["pick"]["variant"] == "int8" and offline["pick"]["batch"] == 8 and offline["excluded"] == []
    alone = [row("int8", "ov-cpu", 9.0, 0.97), row("onnx", "ort-cpu", 5.0, 0.97)]
    assert single_stream(recommend(alone, CHAIN, 0.01))[("local", "ov-cpu", 1)]["pick"]["variant"] == "int8"
