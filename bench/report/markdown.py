"""report.md: the artifacts, their verification, and one row per artifact × runtime × batch × threads."""

from __future__ import annotations

from bench.report.accuracy_columns import accuracy_cells, accuracy_columns
from bench.report.compression import compression_section
from bench.report.devices import device_facts, device_groups, per_device
from bench.report.notes import int8_notes
from bench.report.placement import placement_lines
from bench.report.summary import (
    COLUMNS,
    EXPLANATION,
    TEXT_COLUMNS,
    excluded_text,
    heading,
    ms_text,
    recommendations,
    size_text,
    summary_rows,
)
from bench.steadiness import STEADY_VARIATION
from edgeopt.core.onnx_model import describe_upgrade
from runtimes.ort import DISABLED_FUSIONS


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def verification_cell(artifact: dict) -> str:
    verification = artifact.get("verification")
    if verification is None:
        return "reference"
    worst = max(verification["outputs"], key=lambda o: o["max_abs"])
    verdict = "verified" if verification["passed"] else "**FAILED**"
    # "(INT8 simulated)", "(BF16 arithmetic simulated)": verified in the target's arithmetic, not this CPU's
    simulated = verification["reference"].rpartition(" (")[2].removesuffix(")")
    how = f", {simulated}" if simulated.endswith(" simulated") else ""
    return (
        f"{verdict}: max abs {worst['max_abs']:.2g}, min cosine {worst['cosine_min']:.6f} "
        f"on {verification['samples']} samples{how}"
    )


def render(document: dict) -> str:
    lines = _header(document)
    lines += _recommendation_section(document)
    lines += _artifacts_section(document["artifacts"])
    lines += _graph_section(document["artifacts"])
    if per_device(document):
        for device, rows in device_groups(document):
            lines += ["", f"## Device {device['name']}", "", *device_facts(device, document)]
            lines += _rows_section(rows, "###") if rows else []
    else:
        lines += _rows_section(document["rows"])
    lines += _device_section(document["rows"])
    lines += _server_section(document["scenarios"])
    lines += compression_section(document)
    lines += _trust_section(document["summary"])
    notes = int8_notes(document)
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in notes]
    placement = placement_lines(document)
    if placement:
        lines += ["", "## Where it ran", ""]
        lines += [f"- {line}" for line in placement]
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


def _header(document: dict) -> list[str]:
    machine = document["machine"]
    libraries = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items() if v)
    return [
        f"# edgeopt report: {document['recipe']}",
        "",
        f"Recipe `{document['recipe_path']}`, run {document['created']} in {document['duration_s']:.1f} s.",
        "",
        f"{'Built on' if per_device(document) else 'Machine'}: {machine['cpu']} ({machine['logical_cores']} logical cores; "
        f"{' '.join(machine['cpu_flags']) or 'no SIMD flags read'}; target {machine['target']}), "
        f"{machine['memory_gb']} GB; GPU: {', '.join(machine['gpus']) or 'none'}. {libraries}.",
        "",
    ]


def _artifacts_section(artifacts: dict) -> list[str]:
    lines = [
        "",
        "## Artifacts",
        "",
        "| variant | stage | format | precision | built for | size | nodes | verification | sha256 |",
        "| --- | --- | --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    for name, artifact in artifacts.items():
        facts = artifact["facts"]
        lines.append(
            f"| {name} | {artifact['stage']} | {artifact['format']} | {artifact['precision']} | "
            f"{artifact.get('target') or '—'} | "
            f"{size_text(facts.get('size_bytes'))} | {facts.get('node_count', '—')} | "
            f"{verification_cell(artifact)} | `{artifact['sha256'][:12]}` |"
        )
    return lines


def _rows_section(rows: list[dict], level: str = "##") -> list[str]:
    columns = accuracy_columns(rows)
    lines = [
        "",
        f"{level} Latency and accuracy",
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
    for row in rows:
        latency = row["latency"]
        low, high = latency["p50_ci_ms"]
        speedup = "—" if row["speedup_vs_model"] is None else f"{row['speedup_vs_model']:.2f}×"
        lines.append(
            f"| {row['variant']} | {row['runtime']} | {row['batch']} | {row['threads']} | "
            f"{ms_text(latency['p50_ms'])} | {ms_text(low)}–{ms_text(high)} | {ms_text(latency['p90_ms'])} | "
            f"{ms_text(latency['p99_ms'])} | {latency['runs']} | {latency['throughput_per_s']:.0f} | {speedup} | "
            f"{100 * row['spread']:.1f}%{'' if row['stable'] else ' **unstable**'} | {row['load_s']:.3f} | "
            f"{row['peak_rss_mb']:.0f} | {' | '.join(accuracy_cells(row, columns))} |"
        )
    return lines


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
    """The first screen: one row per target, as `edgeopt report` prints it."""
    lines = ["", "## Recommendation", ""]
    picks = recommendations(document)
    if not picks:
        return [*lines, "Nothing was measured, so there is nothing to recommend."]
    lines += [
        heading(picks, document["max_accuracy_drop"]),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "".join(" --- |" if title in TEXT_COLUMNS else " ---: |" for title in COLUMNS),
    ]
    lines += ["| " + " | ".join(cell.text for cell in cells) + " |" for cells in summary_rows(picks)]
    excluded = excluded_text(picks, document["rows"])
    return [*lines, "", EXPLANATION, *(["", excluded] if excluded else [])]


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
            f"| {row['variant']} | {row['runtime']} | {row['batch']} | {ms_text(device['p50_ms'])} | "
            f"{ms_text(device['p90_ms'])} | {ms_text(device['p99_ms'])} | {ms_text(end_to_end['p50_ms'])} | {_pct(max(share, 0.0))} |"
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
            f"{s['concurrency']} | {s['requests']} | {ms_text(s['p50_ms'])} | {ms_text(s['p90_ms'])} | {ms_text(s['p99_ms'])} |"
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
        if facts.get("upgraded"):
            changes = f"upgraded {describe_upgrade(facts['upgraded'])}; {changes}"
        lines.append(f"| {name} | {nodes} | {facts['parameters']:,} | {size_text(facts['size_bytes'])} | {changes} |")
    return lines


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
