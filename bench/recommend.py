"""Which artifact to ship on each target, under the recipe's accuracy budget.

A target is where an artifact would run: a device (`local`, or a measuring machine by name),
a runtime on it and a thread count. Two scenarios, as MLPerf Inference frames them:
single-stream (one request at a time: the p90 latency at batch 1) and offline (the best
throughput over the batch sweep). A row is a candidate when every rule in `RULES` lets it
through: the accuracy budget (top-1 against labels where there are labels, else agreement
with the source model, else retrieval overlap, else cosine), and that an INT8 artifact is
faster than its float parent where it runs (INT8 pays in accuracy; where its kernels are no
faster, as OpenVINO's INT8 on a CPU without VNNI, the float parent is the better ship). Each
pick is compared with what the user started from: the source model's plain export on the
same target (`baseline`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Target = tuple[str, str, int]  # device, runtime, threads
SOURCE = "model"  # the recipe's source model is always this variant


def accuracy_of(row: dict) -> tuple[float | None, str]:
    accuracy = row["accuracy"]
    if accuracy["top1"] is not None:
        return accuracy["top1"], "top-1"
    if accuracy["agreement_top1"] is not None:
        return accuracy["agreement_top1"], "agreement"
    if accuracy.get("overlap_at_10") is not None:
        return accuracy["overlap_at_10"], "overlap@10"
    return accuracy["cosine_mean"], "cosine"


def target_of(row: dict) -> Target:
    """Rows without a device were measured here (results written before devices existed too)."""
    return row.get("device", "local"), row["runtime"], row["threads"]


def target_label(target: Target) -> str:
    device, runtime, threads = target
    return f"{device} · {runtime} · {threads} thread{'' if threads == 1 else 's'}"


def group_by_target(rows: list[dict]) -> dict[Target, list[dict]]:
    """Rows per target, targets sorted (device, runtime, threads), rows in their order."""
    groups: dict[Target, list[dict]] = {}
    for row in rows:
        groups.setdefault(target_of(row), []).append(row)
    return dict(sorted(groups.items()))


def baseline_variant(artifacts: dict, measured: set[str]) -> str | None:
    """What a pick is compared with on a target, among the variants measured there: the
    source model's plain export (the first export_onnx variant made from it), else the
    source model itself (a torch runtime, or an ONNX source), else the first engine built
    from that export (a TensorRT runtime runs neither)."""
    source = artifacts.get(SOURCE)
    export = None
    if source is not None:
        export = next(
            (name for name, a in artifacts.items() if a["stage"] == "export_onnx" and a["parent"] == source["sha256"]),
            None,
        )
    engine = None
    if export is not None:
        sha = artifacts[export]["sha256"]
        engine = next((n for n, a in artifacts.items() if a["stage"] == "build_trt" and a["parent"] == sha), None)
    return next((name for name in (export, SOURCE, engine) if name is not None and name in measured), None)


@dataclass(frozen=True)
class Context:
    """What a rule weighs a row against: the source model's accuracy, the budget, every
    artifact's record and every row measured on the row's target."""

    reference: float | None
    metric: str
    max_drop: float
    artifacts: dict
    on_target: list[dict]


# A rule returns why a row may not be recommended, or None where it may.
Rule = Callable[[dict, Context], str | None]


def within_budget(row: dict, context: Context) -> str | None:
    value = accuracy_of(row)[0]
    if context.reference is None:
        return None
    if value is None:
        return "no accuracy measured"
    return None if context.reference - value <= context.max_drop + 1e-12 else "over the accuracy budget"


# how much faster than its float parent an INT8 artifact must be, at the same batch on the
# same target, to be recommended there: more than the run-to-run noise (twins agree within
# 3%), so that a tie never ships the less accurate artifact
MIN_INT8_SPEEDUP = 1.05
FLOAT = ("fp32", "fp16", "bf16")


def faster_than_float_parent(row: dict, context: Context) -> str | None:
    """INT8 rows against their nearest float ancestor measured on the same target (p50 at
    the same batch); where none was measured there, the rule cannot judge and lets it through."""
    record = context.artifacts.get(row["variant"], {})
    if not str(record.get("precision", row["precision"])).startswith("int8"):
        return None
    parent = float_ancestor(row["variant"], context.artifacts, {r["variant"] for r in context.on_target})
    same = [r for r in context.on_target if r["variant"] == parent and r["batch"] == row["batch"]]
    if not same or same[0]["latency"]["p50_ms"] >= MIN_INT8_SPEEDUP * row["latency"]["p50_ms"]:
        return None
    # the same words on every target, so the summary names the rule once; each pick's record
    # says where, and the report's notes give the ratios
    return f"INT8 less than {MIN_INT8_SPEEDUP - 1:.0%} faster than its float parent"


def float_ancestor(name: str, artifacts: dict, measured: set[str]) -> str | None:
    """The nearest ancestor of `name` in FP32, FP16 or BF16 among `measured`."""
    by_sha = {record["sha256"]: other for other, record in artifacts.items() if record.get("sha256")}
    seen = {name}
    parent = by_sha.get(artifacts.get(name, {}).get("parent"))
    while parent is not None and parent not in seen:
        if artifacts[parent].get("precision") in FLOAT and parent in measured:
            return parent
        seen.add(parent)
        parent = by_sha.get(artifacts[parent].get("parent"))
    return None


RULES: tuple[Rule, ...] = (within_budget, faster_than_float_parent)


@dataclass(frozen=True)
class Scenario:
    name: str
    batch_one: bool  # only batch-1 rows compete
    field: str  # the latency figure scored
    lower_is_better: bool

    def score(self, row: dict) -> float:
        return row["latency"][self.field]

    def ranked(self, rows: list[dict]) -> list[dict]:
        return sorted(rows, key=self.score, reverse=not self.lower_is_better)

    def speedup(self, row: dict, baseline: dict) -> float:
        ratio = self.score(baseline) / self.score(row)
        return ratio if self.lower_is_better else 1 / ratio


SCENARIOS = (
    Scenario("single-stream", True, "p90_ms", True),
    Scenario("offline", False, "throughput_per_s", False),
)


def recommend(rows: list[dict], artifacts: dict, max_drop: float) -> list[dict]:
    """One pick per target and scenario (single-stream first), targets in order."""
    picks = []
    measured = {r["variant"] for r in rows}
    source = SOURCE if SOURCE in measured else baseline_variant(artifacts, measured)
    for target, on_target in group_by_target(rows).items():
        reference, metric = _reference(rows, target, source)
        context = Context(reference, metric, max_drop, artifacts, on_target)
        verdicts = {id(row): next((why for rule in RULES if (why := rule(row, context))), None) for row in on_target}
        baseline = baseline_variant(artifacts, {r["variant"] for r in on_target})
        for scenario in SCENARIOS:
            pool = [r for r in on_target if r["batch"] == 1 or not scenario.batch_one]
            if pool:
                picks.append(_pick(target, scenario, pool, verdicts, baseline, context))
    return picks


def _reference(rows: list[dict], target: Target, source: str | None) -> tuple[float | None, str]:
    """The source model's accuracy (its plain export's where the source itself was not
    measured), on the target's device where it was measured there."""
    sources = [r for r in rows if r["variant"] == source and accuracy_of(r)[0] is not None]
    same_device = [r for r in sources if target_of(r)[0] == target[0]]
    if not sources:
        return None, accuracy_of(rows[0])[1]
    return accuracy_of((same_device or sources)[0])


def _pick(target: Target, scenario: Scenario, pool: list[dict], verdicts: dict, baseline_name, context) -> dict:
    ranked = scenario.ranked([r for r in pool if verdicts[id(r)] is None])
    chosen = ranked[0] if ranked else None
    runner = next((r for r in ranked if r["variant"] != chosen["variant"]), None) if chosen else None
    baseline = scenario.ranked([r for r in pool if r["variant"] == baseline_name])
    base = baseline[0] if baseline else None
    # a variant is left out where none of its rows in the pool may be picked (an INT8 artifact
    # slower at batch 1 may still be the offline pick at batch 8)
    allowed = {r["variant"] for r in pool if verdicts[id(r)] is None}
    excluded = {r["variant"]: verdicts[id(r)] for r in pool if r["variant"] not in allowed}
    device, runtime, threads = target
    pick = {
        "device": device,
        "runtime": runtime,
        "threads": threads,
        "scenario": scenario.name,
        "metric": context.metric,
        "reference": context.reference,
        "pick": _entry(chosen, scenario, base, context) if chosen else None,
        "runner_up": _entry(runner, scenario, base, context) if runner else None,
        "baseline": _entry(base, scenario, None, context) if base else None,
        "excluded": [{"variant": name, "reason": why} for name, why in excluded.items()],
    }
    return {**pick, "text": pick_text(pick)}


def _entry(row: dict, scenario: Scenario, baseline: dict | None, context: Context) -> dict:
    value = accuracy_of(row)[0]
    facts = context.artifacts.get(row["variant"], {}).get("facts", {})
    return {
        "variant": row["variant"],
        "precision": row["precision"],
        "batch": row["batch"],
        scenario.field: scenario.score(row),
        "speedup": scenario.speedup(row, baseline) if baseline else None,
        "accuracy": value,
        "accuracy_change": None if value is None or context.reference is None else value - context.reference,
        "size_bytes": facts.get("size_bytes"),
        "peak_rss_mb": row["peak_rss_mb"],
    }


def accuracy_change_text(change: float | None, metric: str) -> str:
    if change is None:
        return "—"
    return f"{100 * change:+.2f} pt" if metric in ("top-1", "agreement") else f"{change:+.4f}"


def pick_text(pick: dict) -> str:
    """The pick in one sentence, as report.md and the terminal word it."""
    head = f"{target_label((pick['device'], pick['runtime'], pick['threads']))}, {pick['scenario']}: "
    chosen, base = pick["pick"], pick["baseline"]
    if chosen is None:
        return head + "nothing within the accuracy budget"
    if "p90_ms" in chosen:
        figure = f"p90 {chosen['p90_ms']:.3f} ms"
    else:
        figure = f"{chosen['throughput_per_s']:,.0f} samples/s at batch {chosen['batch']}"
    if base is None:
        versus = "no plain export of the source model measured here to compare with"
    else:
        what = "the source model" if base["variant"] == SOURCE else "the source model's plain export"
        if base["variant"] == chosen["variant"]:
            versus = f"{what} itself"
        else:
            versus = f"{chosen['speedup']:.2f}× as fast as {what} ({base['variant']})"
    change = accuracy_change_text(chosen["accuracy_change"], pick["metric"])
    text = f"{head}{chosen['variant']} ({chosen['precision']}), {figure}, {versus}, {change} {pick['metric']}"
    runner = pick["runner_up"]
    if runner is not None:
        text += f"; runner-up {runner['variant']}"
    return text
