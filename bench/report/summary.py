"""The first screen of every report: per target, the single-stream pick, its speedup over the
source model's plain export there, its accuracy change, size and memory, the runner-up and
the offline pick, as cells that report.md, report.html and the terminal lay out alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.compare import load_run
from bench.recommend import accuracy_change_text, recommend, target_label, target_of
from bench.results import SCHEMA_VERSION
from edgeopt.core.errors import DataError

COLUMNS = (
    "target",
    "recommended",
    "p90 ms",
    "vs plain export",
    "accuracy change",
    "size",
    "memory",
    "runner-up",
    "offline best",
)
TEXT_COLUMNS = {"target", "recommended"}  # the others sort by number
LEFT_COLUMNS = {*TEXT_COLUMNS, "runner-up", "offline best"}  # words, though they sort by a number
EXPLANATION = (
    "Recommended: the fastest p90 latency at batch 1 on the target within the accuracy budget. "
    "vs plain export: the p90 of the source model's plain export on the same target (the first export_onnx "
    "variant made from the source model; for a torch runtime, the source model itself) over the pick's. "
    "Accuracy change: against the source model. Runner-up: the next fastest other artifact within the "
    "budget, and how much higher its p90 is. Memory: the measuring process's peak resident memory. Offline best: the highest throughput over the batch sweep within "
    "the budget."
)


@dataclass(frozen=True)
class Cell:
    text: str
    value: float | str | None = None  # what a table sorts by; the text where None


def heading(picks: list[dict], max_drop: float) -> str:
    """What the summary's rows are, with the accuracy metric their changes are in."""
    metrics = sorted({pick["metric"] for pick in picks})
    return (
        f"The pick per target (device · runtime · threads) within a drop of {max_drop:g} in "
        f"{' / '.join(metrics)} from the source model; accuracy changes in {' / '.join(metrics)}"
        f"{' points' if set(metrics) <= {'top-1', 'agreement'} else ''}."
    )


def recommendations(document: dict) -> list[dict]:
    """The document's picks; results written before this schema get them worked out anew."""
    if document.get("schema_version") == SCHEMA_VERSION:
        return document["recommendations"]
    return recommend(document["rows"], document["artifacts"], document["max_accuracy_drop"])


def size_text(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "—"
    return f"{size_bytes / 1e6:.2f} MB" if size_bytes >= 1e5 else f"{size_bytes / 1e3:.1f} kB"


def ms_text(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def summary_rows(picks: list[dict]) -> list[list[Cell]]:
    """One row of cells per target (in COLUMNS order), from its single-stream and offline picks."""
    by_target: dict[tuple, dict[str, dict]] = {}
    for pick in picks:
        by_target.setdefault((pick["device"], pick["runtime"], pick["threads"]), {})[pick["scenario"]] = pick
    return [_row(target, scenarios) for target, scenarios in by_target.items()]


def _row(target: tuple, scenarios: dict[str, dict]) -> list[Cell]:
    label = Cell(target_label(target))
    offline = _offline(scenarios.get("offline"))
    single = scenarios.get("single-stream")
    if single is None or single["pick"] is None:
        reason = "no batch-1 measurement" if single is None else "nothing within the accuracy budget"
        return [label, Cell(reason), *(Cell("—") for _ in COLUMNS[2:-1]), offline]
    pick, base, runner = single["pick"], single["baseline"], single["runner_up"]
    if base is None:
        versus = Cell("no plain export here")
    else:
        versus = Cell(f"{pick['speedup']:.2f}× {base['variant']}", pick["speedup"])
    change = pick["accuracy_change"]
    return [
        label,
        Cell(f"{pick['variant']} ({pick['precision']})", pick["variant"]),
        Cell(ms_text(pick["p90_ms"]), pick["p90_ms"]),
        versus,
        Cell(accuracy_change_text(change, single["metric"]), change),
        Cell(size_text(pick["size_bytes"]), pick["size_bytes"]),
        Cell(f"{pick['peak_rss_mb']:.0f} MB", pick["peak_rss_mb"]),
        _runner(pick, runner),
        offline,
    ]


def _runner(pick: dict, runner: dict | None) -> Cell:
    if runner is None:
        return Cell("—")
    slower = runner["p90_ms"] / pick["p90_ms"] - 1
    return Cell(f"{runner['variant']} (+{100 * slower:.0f}%)", slower)


def _offline(offline: dict | None) -> Cell:
    if offline is None or offline["pick"] is None:
        return Cell("—")
    best = offline["pick"]
    text = f"{best['variant']}, batch {best['batch']}: {best['throughput_per_s']:,.0f}/s"
    return Cell(text, best["throughput_per_s"])


def excluded_text(picks: list[dict], rows: list[dict]) -> str | None:
    """Which artifacts a rule kept out of the picks, and why, once per reason; with where,
    when a rule kept one out on only some of the targets it was measured on (an INT8
    artifact slower than its float parent on one runtime and faster on another)."""
    measured: dict[str, set] = {}
    for row in rows:
        measured.setdefault(row["variant"], set()).add(target_of(row))
    kept_out: dict[tuple[str, str], set] = {}
    for pick in picks:
        for entry in pick.get("excluded", []):
            target = (pick["device"], pick["runtime"], pick["threads"])
            kept_out.setdefault((entry["reason"], entry["variant"]), set()).add(target)
    if not kept_out:
        return None
    reasons: dict[str, list[str]] = {}
    for (why, variant), targets in kept_out.items():
        everywhere = targets >= measured.get(variant, set())
        reasons.setdefault(why, []).append(
            variant if everywhere else f"{variant} on {_where(targets, measured[variant])}"
        )
    return "Not considered: " + "; ".join(f"{', '.join(names)} ({why})" for why, names in reasons.items()) + "."


def _where(targets: set, measured: set) -> str:
    """The targets by name, a device's runtime as one where every thread count of it is there."""
    runtimes = sorted({(device, runtime) for device, runtime, _ in targets})
    parts = []
    for device, runtime in runtimes:
        here = sorted(t for t in targets if t[:2] == (device, runtime))
        whole = len(here) == len([t for t in measured if t[:2] == (device, runtime)])
        parts += [f"{device} · {runtime}"] if whole else [target_label(t) for t in here]
    return ", ".join(parts)


def load_summary_run(path: Path) -> dict:
    """A run's results.json, checked to hold what the summary reads: a hand-edited or
    truncated one is bad input, named in one line."""
    document = load_run(path)
    try:
        summary_rows(recommendations(document))
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as err:
        raise DataError(
            f"{path}: its results.json lacks what the summary reads ({type(err).__name__}: {err}); re-run its recipe"
        ) from err
    return document
