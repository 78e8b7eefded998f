"""What the command line prints on stdout: tables of results and one-line summaries.

Logs and progress go to stderr (edgeopt.log); everything here is a result.
"""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

WIDTH = 120
SHORT = {"vs plain export": "vs export", "accuracy change": "Δ accuracy"}  # the summary's headers, for 120 columns


def _table(title: str, columns: tuple[str, ...], left: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    return table


def run_rows(rows: list[dict]) -> None:
    """A recipe run's rows: latency and the accuracy columns that apply."""
    from bench.report.accuracy_columns import accuracy_cells, accuracy_columns

    if not rows:
        print("nothing was measured")
        return
    columns = accuracy_columns(rows)
    accuracy = columns[:1] if columns[0] == "top-1" else columns
    devices = {row.get("device", "local") for row in rows} != {"local"}  # a column only where it tells
    table = _table(
        "latency (ms per call) and accuracy",
        (
            *(("device",) if devices else ()),
            *("variant", "runtime", "batch", "threads", "p50", "p90", "p99", "items/s", "speedup", *accuracy),
        ),
        ("device", "variant", "runtime"),
    )
    for row in rows:
        latency = row["latency"]
        table.add_row(
            *((row.get("device", "local"),) if devices else ()),
            row["variant"],
            row["runtime"],
            str(row["batch"]),
            str(row["threads"]),
            f"{latency['p50_ms']:.3f}",
            f"{latency['p90_ms']:.3f}",
            f"{latency['p99_ms']:.3f}",
            f"{latency['throughput_per_s']:.0f}",
            "—" if row["speedup_vs_model"] is None else f"{row['speedup_vs_model']:.2f}×",
            *accuracy_cells(row, accuracy),
        )
    Console(width=WIDTH).print(table)


def recommendation(document: dict) -> None:
    """The first screen of the report: per target, the pick, its speedup over the source
    model's plain export, accuracy change, size and memory; then the runner-up and the offline
    pick. Two borderless tables, so that 120 columns hold them without cutting a figure."""
    from bench.report.summary import COLUMNS, LEFT_COLUMNS, excluded_text, heading, recommendations, summary_rows

    picks = recommendations(document)
    if not picks:
        print("nothing was measured, so there is nothing to recommend")
        return
    print(heading(picks, document["max_accuracy_drop"]))
    rows = summary_rows(picks)
    console = Console(width=WIDTH)
    for columns in (COLUMNS[:7], (COLUMNS[0], *COLUMNS[7:])):
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for column in columns:
            title = SHORT.get(column, column)
            left = column in LEFT_COLUMNS  # words may wrap to a second line; figures never do
            table.add_column(title, justify="left" if left else "right", no_wrap=not left)
        for cells in rows:
            table.add_row(*(cells[COLUMNS.index(column)].text for column in columns))
        console.print(table)
    excluded = excluded_text(picks, document["rows"])
    if excluded:
        print(excluded)


def run_trust(summary: dict) -> None:
    """How far a run's numbers can be trusted, in a few lines."""
    if not summary["measurements"]:
        return
    print(
        f"spread of the median between even and odd interleaved rounds: {100 * summary['median_spread']:.1f}% typical, "
        f"{100 * summary['max_spread']:.1f}% at most; unstable measurements: {len(summary['unstable'])}"
    )
    if summary["max_twice_difference"] is not None:
        print(f"same artifact measured twice: medians differ by {100 * summary['max_twice_difference']:.1f}% at most")
    if summary.get("harness_overhead_fastest") is not None:
        print(
            f"harness overhead: {summary['harness_overhead_fastest']:.4f}× a bare loop's median on the fastest call "
            f"({summary['harness_overhead_fastest_at']}), {summary['median_harness_overhead']:.4f}× typical"
        )
    steadiness = summary.get("machine_steadiness")
    if steadiness is not None:
        print(
            f"the machine itself: a fixed workload ran {100 * steadiness['variation']:.0f}% slower in its slow spells "
            f"than in its fast ones, its even and odd rounds {100 * steadiness['spread']:.1f}% apart"
        )


def transform(artifact, output: Path, auto_target: bool = False) -> None:
    """One line for a single-step transform: what changed, and its verification."""
    worst = artifact.verification.worst()
    before = artifact.facts["before"]
    built_for = ""
    if artifact.target:
        built_for = f"built for {artifact.target}{' (auto: this host)' if auto_target else ''}; "
    upgraded = ""
    if artifact.facts.get("upgraded"):
        from edgeopt.core.onnx_model import describe_upgrade

        upgraded = f"upgraded {describe_upgrade(artifact.facts['upgraded'])}; "
    print(
        f"{output}: {built_for}{upgraded}{before['node_count']} → {artifact.facts['node_count']} nodes, "
        f"{before['size_bytes'] / 1e6:.2f} → {artifact.facts['size_bytes'] / 1e6:.2f} MB; "
        f"verified against the input: max abs {worst.max_abs:.2g}, min cosine {worst.cosine_min:.6f}"
    )


def engine(artifact, output: Path) -> None:
    worst = artifact.verification.worst()
    meta = artifact.engine
    print(
        f"{output}: {artifact.precision} engine for {meta['gpu']} with TensorRT {meta['tensorrt_version']}, "
        f"{artifact.facts['size_bytes'] / 1e6:.2f} MB; verified against the input: max abs {worst.max_abs:.2g}, "
        f"min cosine {worst.cosine_min:.6f}"
    )


def bench_rows(rows, device: str | None = None) -> None:
    """`edgeopt bench`: (artifact, runtime, threads, LatencyStats) per measurement."""
    table = _table(
        f"latency (ms per call), random inputs{f', on device {device}' if device else ''}",
        ("artifact", "runtime", "batch", "threads", "p50", "p90", "p99", "mean", "runs", "items/s"),
        ("artifact", "runtime"),
    )
    for artifact, runtime_id, threads, stats in rows:
        table.add_row(
            artifact,
            runtime_id,
            str(stats.batch),
            str(threads),
            f"{stats.p50_ms:.3f}",
            f"{stats.p90_ms:.3f}",
            f"{stats.p99_ms:.3f}",
            f"{stats.mean_ms:.3f}",
            str(stats.runs),
            f"{stats.throughput_per_s:.0f}",
        )
    Console(width=WIDTH).print(table)


def comparison(result, before: Path, after: Path, threshold: float) -> None:
    """`edgeopt compare`: each measurement faster, slower or within noise."""
    devices = {change.key[0] for change in result.changes} - {"local"}  # a column only where it tells
    table = _table(
        f"p50 latency, {before} → {after}",
        (
            *(("device",) if devices else ()),
            *("variant", "runtime", "batch", "threads", "before ms", "after ms", "ratio", "verdict"),
        ),
        ("device", "variant", "runtime", "verdict"),
    )
    for change in result.changes:
        device, variant, runtime, batch, threads = change.key
        table.add_row(
            *((device,) if devices else ()),
            variant,
            runtime,
            str(batch),
            str(threads),
            f"{change.before_ms:.3f}",
            f"{change.after_ms:.3f}",
            f"{change.ratio:.3f}×",
            change.verdict,
        )
    Console(width=WIDTH).print(table)
    counts = {verdict: sum(c.verdict == verdict for c in result.changes) for verdict in ("faster", "slower")}
    print(
        f"{counts['faster']} faster, {counts['slower']} slower, "
        f"{len(result.changes) - sum(counts.values())} within noise (95% CI of the median, threshold {threshold:.0%})"
    )
    for label, keys in (("only in", result.only_before), ("new in", result.only_after)):
        for key in keys:
            shown = key[1:] if key[0] == "local" else (*key[1:], "on", key[0])
            print(f"{label} {before if label == 'only in' else after}: {' '.join(map(str, shown))}")
