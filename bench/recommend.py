"""Which artifact to ship for each target, under the recipe's accuracy budget.

A target is a device (the machine that measured: this one, or one over SSH), its
processor (CPU, GPU) and a thread count; the pick is an artifact on a runtime, among
that device's rows only. Two scenarios, as MLPerf Inference frames them:
single-stream (one request at a time: the p90 latency at batch 1) and offline (the best
throughput over the batch sweep). Only artifacts whose accuracy is within
`max_drop` of the source model's are candidates: top-1 against labels where there are
labels, else top-1 agreement with the source model. Each pick is compared with the
fastest other fp32 artifact on the same target.
"""

from __future__ import annotations


def accuracy_of(row: dict) -> tuple[float | None, str]:
    accuracy = row["accuracy"]
    if accuracy["top1"] is not None:
        return accuracy["top1"], "top-1"
    if accuracy["agreement_top1"] is not None:
        return accuracy["agreement_top1"], "agreement"
    if accuracy.get("overlap_at_10") is not None:
        return accuracy["overlap_at_10"], "overlap@10"
    return accuracy["cosine_mean"], "cosine"


def recommend(rows: list[dict], max_drop: float) -> list[dict]:
    if not rows:
        return []
    reference, metric = accuracy_of(next((r for r in rows if r["variant"] == "model"), rows[0]))
    devices = list(dict.fromkeys(r.get("device", "local") for r in rows))
    targets = sorted(
        {(r.get("device", "local"), processor_of(r["runtime"]), r["threads"]) for r in rows},
        key=lambda t: (devices.index(t[0]), t[1], t[2]),
    )
    picks = []
    for device, processor, threads in targets:
        on_target = [
            r
            for r in rows
            if (r.get("device", "local"), processor_of(r["runtime"]), r["threads"]) == (device, processor, threads)
        ]
        if len({(r["variant"], r["runtime"]) for r in on_target}) < 2:
            continue
        eligible = [r for r in on_target if reference is None or reference - accuracy_of(r)[0] <= max_drop]
        for scenario, pool, score, better in (
            ("single-stream", [r for r in on_target if r["batch"] == 1], lambda r: r["latency"]["p90_ms"], min),
            ("offline", on_target, lambda r: r["latency"]["throughput_per_s"], max),
        ):
            candidates = [r for r in pool if r in eligible]
            if not candidates:
                continue
            chosen = better(candidates, key=score)
            same = (chosen["variant"], chosen["runtime"])
            fp32 = [r for r in pool if r["precision"] == "fp32" and (r["variant"], r["runtime"]) != same]
            baseline = better(fp32, key=score) if fp32 else None
            picks.append(_pick((device, processor, threads), scenario, chosen, baseline, score, reference, metric))
    return picks


def processor_of(runtime: str) -> str:
    return "CPU" if runtime.endswith("cpu") else "GPU"


def _pick(target, scenario, chosen, baseline, score, reference, metric) -> dict:
    device, processor, threads = target
    value = score(chosen)
    figure = (
        f"p90 {value:.3f} ms" if scenario == "single-stream" else f"{value:,.0f} samples/s at batch {chosen['batch']}"
    )
    if baseline is None:
        versus, speedup = "the only candidate", None
    else:
        speedup = value / score(baseline) if scenario == "offline" else score(baseline) / value
        versus = f"{speedup:.2f}× faster than {baseline['variant']} on {baseline['runtime']} (fp32)"
    drop = None if reference is None else accuracy_of(chosen)[0] - reference
    cost = (
        "" if drop is None else f", {100 * drop:+.1f} pt {metric}" if metric == "top-1" else f", {drop:+.4f} {metric}"
    )
    plural = "thread" if threads == 1 else "threads"
    where = "" if device == "local" else f"{device}: "
    text = (
        f"{where}{processor}, {threads} {plural}, {scenario}: {chosen['variant']} on {chosen['runtime']} "
        f"({chosen['precision']}), {figure}, {versus}{cost}"
    )
    return {
        "device": device,
        "processor": processor,
        "runtime": chosen["runtime"],
        "threads": threads,
        "scenario": scenario,
        "variant": chosen["variant"],
        "baseline": f"{baseline['variant']} on {baseline['runtime']}" if baseline else None,
        "speedup": speedup,
        "accuracy_change": drop,
        "text": text,
    }
