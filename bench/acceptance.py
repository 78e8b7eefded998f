"""The closing summary of `make bench`: the benchmark's own bars, checked on one run of
recipes/bench.yaml and one of the same recipe with its variants in reverse order.

- harness overhead: the harness's median over a bare timed loop around the same session,
  at the fastest call, where its fixed cost per call weighs most;
- one artifact measured twice under two names: how far its two medians lie apart;
- reordering: how far each row's latency moves between the runs beside the rows measured
  with it (same runtime, batch and threads), against that twice-measured spread. Their
  typical move is the machine's between the runs, and not every workload follows it alike:
  eager PyTorch, the source model's row, moved 2 points more than the ONNX Runtime rows
  in one pair, which moved every speedup over it. That row is never reordered, so its own
  move is stated beside the bar, not judged;
- the report: report.html holds the Pareto plot and a recommendation.

Beside the bars it states how steady the machine itself ran in each run: a fixed workload
timed in every round among the artifacts (bench/steadiness.py). Where its slow spells ran
over 10% slower than its fast ones, the two spread bars measure the machine as much as
the harness, and the line says they need a steadier machine.

    python -m bench.acceptance runs/bench runs/bench-reordered

Exit 0 when every bar holds, 1 when one does not (the lines say which), 2 on bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bench.compare import load_run
from bench.steadiness import STEADY_VARIATION
from edgeopt.core.errors import DataError

OVERHEAD_BAR = 1.02
TWICE_BAR = 0.03


def check(run: dict, reordered: dict, html: str) -> list[tuple[bool, str]]:
    """(holds, line) per bar."""
    summary = run["summary"]
    overhead = summary.get("harness_overhead_fastest")
    twice = summary.get("max_twice_difference")
    moved = reorder_change(run, reordered)
    results = [
        (
            overhead is not None and overhead < OVERHEAD_BAR,
            "harness overhead: "
            + (
                f"{overhead:.4f}× a bare loop on the fastest call ({summary['harness_overhead_fastest_at']})"
                if overhead is not None
                else "not measured (bench: harness_overhead)"
            )
            + f" (bar < {OVERHEAD_BAR})",
        ),
        (
            twice is not None and twice <= TWICE_BAR,
            "same artifact measured twice: "
            + (f"medians {twice:.1%} apart at most" if twice is not None else "no twin variant in the recipe")
            + f" (bar ≤ {TWICE_BAR:.0%})",
        ),
        (
            moved is not None and twice is not None and moved[0] <= max(twice, TWICE_BAR),
            "reordered variants: "
            + (
                f"a row moved {moved[0]:.1%} at most beside the rows measured with it ({moved[1]}; {moved[2]})"
                if moved
                else "no two rows of one runtime in both runs"
            )
            + (f" (bar ≤ the twice-measured spread, {max(twice, TWICE_BAR):.1%})" if twice is not None else ""),
        ),
        (
            'id="pareto"' in html and "<tr><td" in _section(html, "recommendation"),
            "report.html: the Pareto plot and a recommendation per target",
        ),
    ]
    return results


def reorder_change(run: dict, reordered: dict) -> tuple[float, str, str] | None:
    """The largest relative move of a row's latency between the runs against the median move
    of the rows of its runtime, batch and threads; where; and how the runs moved as a whole."""

    def latencies(document: dict) -> dict:
        return {(r["variant"], r["runtime"], r["batch"], r["threads"]): r["latency"]["p50_ms"]
                for r in document["rows"] if r.get("latency")}  # fmt: skip

    before, after = latencies(run), latencies(reordered)
    change = {key: after[key] / before[key] for key in before.keys() & after.keys()}
    groups: dict[tuple, list[float]] = {}
    for key, ratio in change.items():
        groups.setdefault(key[1:], []).append(ratio)
    typical = {group: float(np.median(ratios)) for group, ratios in groups.items()}
    moves = {key: abs(ratio / typical[key[1:]] - 1) for key, ratio in change.items() if len(groups[key[1:]]) > 1}
    if not moves:
        return None
    worst = max(moves, key=moves.get)
    variant, runtime, batch, threads = worst
    alone: dict[str, list[str]] = {}
    for key in sorted(change):
        if len(groups[key[1:]]) == 1:
            alone.setdefault(f"{key[0]} on {key[1]}", []).append(f"{change[key] - 1:+.1%}")
    whole = f"that runtime's rows moved {typical[worst[1:]] - 1:+.1%} typically" + "".join(
        f"; {name}, alone on its runtime, {' and '.join(figures)}" for name, figures in alone.items()
    )
    return moves[worst], f"{variant} on {runtime}, batch {batch} × {threads} threads", whole


def machine_line(run: dict, reordered: dict) -> str:
    """How steady the machine ran in both runs, and whether that is steady enough to judge
    the two spread bars."""
    steadiness = [document["summary"].get("machine_steadiness") for document in (run, reordered)]
    if None in steadiness:
        return "the machine itself: its steadiness was not measured in both runs (re-run them)"
    slowest = max(s["variation"] for s in steadiness)
    spreads = " and ".join(f"{100 * s['spread']:.1f}%" for s in steadiness)
    line = (
        f"the machine itself: a fixed workload ran up to {100 * slowest:.0f}% slower in its slow spells than in "
        f"its fast ones, its even and odd rounds {spreads} apart in the two runs"
    )
    if slowest > STEADY_VARIATION:
        line += f"; past {STEADY_VARIATION:.0%}, the two spread bars need a steadier machine"
    return line


def _section(html: str, section_id: str) -> str:
    start = html.find(f'id="{section_id}"')
    return html[start : html.find("</section>", start)] if start >= 0 else ""


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.acceptance RUN REORDERED_RUN", file=sys.stderr)
        return 2
    run_dir, reordered_dir = (Path(arg) for arg in argv)
    try:
        run, reordered = load_run(run_dir), load_run(reordered_dir)
        html = (run_dir / "report.html").read_text(encoding="utf-8")
    except DataError as err:
        print(f"edgeopt: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"edgeopt: {run_dir}/report.html: cannot read it ({err.strerror}); run its recipe first", file=sys.stderr)
        return 2
    results = check(run, reordered, html)
    print(f"Benchmark bars, {run_dir} and {reordered_dir}:")
    for holds, line in results:
        print(f"  {'ok  ' if holds else 'MISS'} {line}")
    print(f"  {machine_line(run, reordered)}")
    missed = sum(not holds for holds, _ in results)
    print(
        f"{len(results) - missed} of {len(results)} bars hold" + ("" if not missed else "; see the lines marked MISS")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
