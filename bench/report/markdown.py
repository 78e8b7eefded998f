"""report.md: the artifacts, their verification, and one row per artifact × runtime × batch × threads."""

from __future__ import annotations

from bench.report.accuracy_columns import accuracy_cells, accuracy_columns
from bench.report.compression import compression_section
from bench.steadiness import STEADY_VARIATION
from runtimes.ort import DISABLED_FUSIONS


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "—"
    return f"{size_bytes / 1e6:.2f} MB" if size_bytes >= 1e5 else f"{size_bytes / 1e3:.1f} kB"


def verification_cell(artifact: dict) -> str:
    verification = artifact.get("verification")
    if verification is None:
        return "reference"
    worst = max(verification["outputs"], key=lambda o: o["max_abs"])
    verdict = "verified" if verification["passed"] else "**FAILED**"
    return f"{verdict}: max abs {worst['max_abs']:.2g}, min cosine {worst['cosine_min']:.6f} on {verification['samples']} samples"


def render(document: dict) -> str:
    machine = document["machine"]
    libraries = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items() if v)
    lines = [
        f"# edgeopt report: {document['recipe']}",
        "",
        f"Recipe `{document['recipe_path']}`, run {document['created']} in {document['duration_s']:.1f} s.",
        "",
        f"Machine: {machine['cpu']} ({machine['logical_cores']} logical cores; "
        f"{' '.join(machine['cpu_flags']) or 'no SIMD flags read'}), {machine['memory_gb']} GB; "
        f"GPU: {', '.join(machine['gpus']) or 'none'}. {libraries}.",
        "",
    ]
    lines += _recommendation_section(document)
    lines += [
        "",
        "## Artifacts",
        "",
        "| variant | stage | format | precision | built for | size | nodes | verification | sha256 |",
        "| --- | --- | --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    for name, artifact in document["artifacts"].items():
        facts = artifact["facts"]
        lines.append(
            f"| {name} | {artifact['stage']} | {artifact['format']} | {artifact['precision']} | "
            f"{artifact.get('target') or '—'} | "
            f"{_size(facts.get('size_bytes'))} | {facts.get('node_count', '—')} | "
            f"{verification_cell(artifact)} | `{artifact['sha256'][:12]}` |"
        )
    lines += _graph_section(document["artifacts"])
    columns = accuracy_columns(document["rows"])
    lines += [
        "",
        "## Latency and accuracy",
        "",
        "Latency per call, in milliseconds; throughput in samples per second. "
        "Speedup is the p50 of `model` over this row's p50 at the same batch and threads. "
        "Top-1 is on the held-out labelled test split; agreement is top-1 agreement with the source model; "
        "for embeddings, cosine is against the source model's and overlap@10 the share of each query's "
        "top-10 documents that it retrieves too. "
        "Spread is how far the pooled medians of the even and the odd interleaved rounds lie apart, and the median's "
        "95% CI comes from resampling whole rounds; load is the cold start of the "
        "measuring process, a fresh one per artifact × runtime × threads; peak memory is its peak RSS.",
        "",
        "| variant | runtime | batch | threads | p50 ms | p50 95% CI | p90 ms | p99 ms | runs | throughput/s | "
        f"speedup | spread | load s | peak MB | {' | '.join(columns)} |",
        "| --- | --- |" + " ---: |" * (12 + len(columns)),
    ]
    for row in document["rows"]:
        latency = row["latency"]
        low, high = latency["p50_ci_ms"]
        speedup = "—" if row["speedup_vs_model"] is None else f"{row['speedup_vs_model']:.2f}×"
        lines.append(
            f"| {row['variant']} | {row['runtime']} | {row['batch']} | {row['threads']} | "
            f"{_ms(latency['p50_ms'])} | {_ms(low)}–{_ms(high)} | {_ms(latency['p90_ms'])} | "
            f"{_ms(latency['p99_ms'])} | {latency['runs']} | {latency['throughput_per_s']:.0f} | {speedup} | "
            f"{100 * row['spread']:.1f}%{'' if row['stable'] else ' **unstable**'} | {row['load_s']:.3f} | "
            f"{row['peak_rss_mb']:.0f} | {' | '.join(accuracy_cells(row, columns))} |"
        )
    lines += _device_section(document["rows"])
    lines += _server_section(document["scenarios"])
    lines += compression_section(document)
    lines += _trust_section(document["summary"])
    notes = int8_notes(document)
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in notes]
    if document["skipped"]:
        lines += ["", "## Not built or not measured", ""]
        lines += [f"- {line}" for line in skipped_lines(document["skipped"])]
    lines += [
        "",
        "Each artifact × runtime × threads is measured in a process of its own with fixed thread settings, "
        "in rounds interleaved across artifacts: warm-up until two windows' medians agree, then timed runs "
        "until both the minimum count and the minimum duration are reached; the clock is perf_counter_ns "
        "around one call.",
        *_runtime_settings(document["rows"]),
        "",
    ]
    return "\n".join(lines)


def _runtime_settings(rows: list[dict]) -> list[str]:
    """What a deployment must set to see these numbers, beyond the runtime's defaults."""
    if not any(row["runtime"] == "ort-cpu" for row in rows):
        return []
    fusions = ", ".join(DISABLED_FUSIONS["cpu"])
    return [
        "",
        f"ONNX Runtime on the CPU runs with its load-time {fusions} off "
        f"(`InferenceSession(..., disabled_optimizers={DISABLED_FUSIONS['cpu']!r})`): the fused kernel is "
        "slower than the operators it replaces; deploy with the same setting to see these numbers.",
    ]


def _recommendation_section(document: dict) -> list[str]:
    lines = ["", "## Recommendation", ""]
    budget = document["max_accuracy_drop"]
    if not document["recommendations"]:
        return [*lines, f"No artifact measured on a target with alternatives is within the accuracy budget ({budget})."]
    lines.append(f"Fastest artifact per target within an accuracy drop of {budget} from the source model:")
    lines.append("")
    return lines + [f"- {pick['text']}" for pick in document["recommendations"]]


def _device_section(rows: list[dict]) -> list[str]:
    """GPU rows: the device time between CUDA events around the enqueue, beside the end-to-end
    time with the host↔device copies, so a slow row says whether copies or kernels cost."""
    timed = [r for r in rows if r.get("device_latency")]
    if not timed:
        return []
    lines = [
        "",
        "## Device time (GPU)",
        "",
        "Device time is measured by CUDA events on the session's stream around the enqueue alone, inputs already "
        "on the device; end to end adds the copies in and out and the synchronisation.",
        "",
        "| variant | runtime | batch | device p50 ms | device p90 ms | device p99 ms | end-to-end p50 ms | copies and host share |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in timed:
        device, end_to_end = row["device_latency"], row["latency"]
        share = 1.0 - device["p50_ms"] / end_to_end["p50_ms"] if end_to_end["p50_ms"] else 0.0
        lines.append(
            f"| {row['variant']} | {row['runtime']} | {row['batch']} | {_ms(device['p50_ms'])} | "
            f"{_ms(device['p90_ms'])} | {_ms(device['p99_ms'])} | {_ms(end_to_end['p50_ms'])} | {_pct(max(share, 0.0))} |"
        )
    return lines


def _server_section(scenarios: list[dict]) -> list[str]:
    if not scenarios:
        return []
    lines = [
        "",
        "## Server scenario",
        "",
        "Requests arrive at random (Poisson) at a fraction of the single-stream capacity (1 / p50 at batch 1) "
        "and are served by concurrent threads sharing one session; latency runs from arrival to answer, "
        "queueing included.",
        "",
        "| variant | runtime | threads | load | rate/s | concurrency | requests | p50 ms | p90 ms | p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in scenarios:
        lines.append(
            f"| {s['variant']} | {s['runtime']} | {s['threads']} | {s['load']:.0%} | {s['rate_per_s']:.0f} | "
            f"{s['concurrency']} | {s['requests']} | {_ms(s['p50_ms'])} | {_ms(s['p90_ms'])} | {_ms(s['p99_ms'])} |"
        )
    return lines


def _trust_section(summary: dict) -> list[str]:
    sentences = trust_sentences(summary)
    return (
        ["", "## How far to trust these numbers", "", *[f"- {sentence}" for sentence in sentences]] if sentences else []
    )


def trust_sentences(summary: dict) -> list[str]:
    """Run-to-run spread, unstable measurements, the harness's overhead and the machine's
    own steadiness, in words."""
    if not summary["measurements"]:
        return []
    sentences = [
        f"Spread of the median between the even and the odd interleaved rounds: {100 * summary['median_spread']:.1f}% "
        f"typical, {100 * summary['max_spread']:.1f}% at most over {summary['measurements']} measurements."
    ]
    if summary["max_twice_difference"] is not None:
        sentences.append(
            f"The same artifact measured twice (under two names, in separate processes): medians differ by "
            f"{100 * summary['max_twice_difference']:.1f}% at most over {len(summary['measured_twice'])} measurements."
        )
    if summary["unstable"]:
        sentences.append(
            f"Unstable (even and odd rounds disagree beyond the threshold): {', '.join(summary['unstable'])}."
        )
    if summary.get("harness_overhead_fastest") is not None:
        sentences.append(
            f"Harness overhead: its median is {summary['harness_overhead_fastest']:.4f}× a bare timed loop's on the "
            f"same session at the fastest call ({summary['harness_overhead_fastest_at']}), where its fixed cost per "
            f"call weighs most; {summary['median_harness_overhead']:.4f}× typical and "
            f"{summary['max_harness_overhead']:.4f}× at most over the measurements, slow calls' ratios being the "
            "machine's noise between adjacent chunks."
        )
    steadiness = summary.get("machine_steadiness")
    if steadiness is not None:
        sentences.append(steadiness_sentence(steadiness))
    return sentences


def steadiness_sentence(steadiness: dict) -> str:
    sentence = (
        f"The machine itself: a fixed workload timed in every round beside the artifacts ran "
        f"{100 * steadiness['variation']:.0f}% slower in its slow spells than in its fast ones (p90 over p10 of "
        f"{steadiness['slices']} slices), and its even and odd rounds were {100 * steadiness['spread']:.1f}% apart."
    )
    if steadiness["variation"] > STEADY_VARIATION:
        sentence += (
            " On a machine whose own speed swings this much, medians move by a few percent from one run to the "
            "next with the mix of spells each measurement met; compare artifacts a few percent apart on a "
            "steadier machine."
        )
    return sentence


def op_changes(before: dict[str, int], after: dict[str, int]) -> str:
    """The op histogram's difference, largest first: `-Cast×12, -Shape×6, +Gelu×2`."""
    delta = {op: after.get(op, 0) - before.get(op, 0) for op in before.keys() | after.keys()}
    changed = sorted((d, op) for op, d in delta.items() if d)
    changed.sort(key=lambda item: -abs(item[0]))
    return ", ".join(f"{'+' if d > 0 else '-'}{op}×{abs(d)}" for d, op in changed) or "none"


def _graph_section(artifacts: dict) -> list[str]:
    rows = [
        (name, artifact["facts"])
        for name, artifact in artifacts.items()
        if artifact["format"] == "onnx" and "node_count" in artifact["facts"]
    ]
    if not rows:
        return []
    lines = [
        "",
        "## Graphs",
        "",
        "| variant | nodes | parameters | size | ops changed from its input |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, facts in rows:
        before = facts.get("before")
        nodes = f"{before['node_count']} → {facts['node_count']}" if before else str(facts["node_count"])
        changes = op_changes(before["op_histogram"], facts["op_histogram"]) if before else "—"
        if facts.get("fp32_nodes_overflow"):
            changes = f"kept FP32 for range: {', '.join(facts['fp32_nodes_overflow'])}"
        lines.append(f"| {name} | {nodes} | {facts['parameters']:,} | {_size(facts['size_bytes'])} | {changes} |")
    return lines


def int8_notes(document: dict) -> list[str]:
    """Say plainly where an INT8 artifact is not faster than its float parent, and why."""
    artifacts = document["artifacts"]
    by_sha = {artifact["sha256"]: name for name, artifact in artifacts.items()}
    p50 = {(r["variant"], r["runtime"], r["batch"], r["threads"]): r["latency"]["p50_ms"] for r in document["rows"]}
    vnni = {"avx512_vnni", "avx_vnni"} & set(document["machine"]["cpu_flags"])
    notes = []
    for name, artifact in artifacts.items():
        if not artifact["precision"].startswith("int8"):
            continue
        parent = by_sha.get(artifact["parent"])
        budget = artifact["facts"].get("budget")
        if budget:
            notes.append(budget_note(name, budget))
        notes += target_notes(name, artifact, document)
        pairs = [
            (key, p50[key], p50[(parent, *key[1:])]) for key in p50 if key[0] == name and (parent, *key[1:]) in p50
        ]
        if pairs:
            ratios = ", ".join(
                f"{k[1]} batch {k[2]} × {k[3]} threads {theirs / mine:.2f}×" for k, mine, theirs in pairs
            )
            notes.append(f"{name} against its float parent {parent} (p50 ratio, above 1 is faster): {ratios}.")
        slower = [(key, mine, theirs) for key, mine, theirs in pairs if mine >= theirs]
        if not slower:
            continue
        reasons = []
        if artifact["facts"].get("parameters", 0) < 1_000_000:
            reasons.append(
                f"the model is tiny ({artifact['facts']['parameters']:,} weights), so quantize/dequantize "
                "overhead outweighs the arithmetic INT8 saves"
            )
        if not vnni:
            reasons.append("this CPU has no VNNI, so each INT8 dot product takes several instructions")
        cases = ", ".join(
            f"{k[1]} batch {k[2]} × {k[3]} threads: {mine:.3f} vs {theirs:.3f} ms" for k, mine, theirs in slower
        )
        notes.append(
            f"**{name} is not faster than its float parent {parent}** ({cases}). Likely: {'; '.join(reasons) or 'operators left in float'}."
        )
    return notes


def target_notes(name: str, artifact: dict, document: dict) -> list[str]:
    """The INT8 flavour an artifact was built with, for which target, and a warning where
    it was measured on a CPU of another target, whose kernels are not the target's."""
    facts, target = artifact["facts"], artifact.get("target")
    flavour = facts.get("flavour")
    if not flavour or not target:
        return []
    calibration = (
        f"{facts['method']} calibration on {facts['calibration_samples']} samples, "
        if "method" in facts
        else "activations quantized per call, "
    )
    notes = [
        f"{name}: {calibration}built for {target}: {flavour['activations']} activations, "
        f"{flavour['weights']} weights{' (7-bit)' if flavour['reduce_range'] else ''}; {flavour['reason']}."
    ]
    host = document["machine"].get("target")
    measured = sorted({r["runtime"] for r in document["rows"] if r["variant"] == name and r["runtime"].endswith("cpu")})
    if host and target != host and measured:
        notes.append(
            f"**{name} was built for {target} but measured on this {host} machine** ({', '.join(measured)}): "
            f"its latency and accuracy here come from this CPU's INT8 kernels, not {target}'s; "
            f"measure it on a {target} machine, or build it for {host} to ship here."
        )
    return notes


def budget_note(name: str, budget: dict) -> str:
    """What an accuracy budget kept in float, and what that costs."""

    def shown(value: float) -> str:
        return f"{100 * value:.2f}%" if budget["metric"] == "top1" else f"{value:.5f}"

    verdict = "met" if budget["met"] else "**NOT met**"
    text = (
        f"{name}: budget {budget['metric']} drop ≤ {shown(budget['max_drop'])} {verdict}: "
        f"{shown(budget['int8'])} against float {shown(budget['float'])} on the {budget['checked_on']}"
    )
    if not budget["kept_float"]:
        return text + "; every quantizable node is INT8."
    kept = ", ".join(
        f"{k['node']} ({k['op_type']}{', ' + k['module'] if k['module'] else ''})" for k in budget["kept_float"]
    )
    text += f"; kept in float, most sensitive first: {kept}"
    if budget["latency_ms"] and budget["latency_ms_all_int8"]:
        cost = budget["latency_ms"] / budget["latency_ms_all_int8"] - 1
        text += (
            f"; batch-1 latency {budget['latency_ms']:.3f} ms against {budget['latency_ms_all_int8']:.3f} ms "
            f"all-INT8 ({100 * cost:+.0f}%)"
        )
    return text + "."


def skipped_lines(skipped: list[dict]) -> list[str]:
    """One line per variant not built, and one per runtime × reason listing its variants,
    so a machine without a GPU gets a line per missing runtime, not one per artifact."""
    lines = [f"{s['variant']}: {s['reason']}" for s in skipped if s["runtime"] is None]
    grouped: dict[tuple[str, str], list[str]] = {}
    for s in skipped:
        if s["runtime"] is not None:
            grouped.setdefault((s["runtime"], s["reason"]), []).append(s["variant"])
    lines += [f"{', '.join(variants)} on {runtime}: {reason}" for (runtime, reason), variants in grouped.items()]
    return lines
