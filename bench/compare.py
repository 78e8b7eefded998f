"""`edgeopt compare RUN_A RUN_B`: what got faster or slower beyond noise.

A change counts only when the two medians' 95% confidence intervals do not overlap and
the ratio moves by more than `threshold`: the intervals catch noisy measurements, the
threshold changes too small to matter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench.results import SCHEMA_VERSION
from edgeopt.core.errors import DataError

# 4 to 6 only add fields (GPU device latency, unbuilt variants, steadiness, targets); 7 adds each
# row's device (older runs read as "local") and where it ran, and reshapes recommendations
# (compare reads none)
READABLE = (3, 4, 5, 6, SCHEMA_VERSION)

Key = tuple[str, str, str, int, int]  # device, variant, runtime, batch, threads


@dataclass(frozen=True)
class Change:
    key: Key
    before_ms: float
    after_ms: float
    verdict: str  # faster, slower, within noise

    @property
    def ratio(self) -> float:
        """After over before: below 1 is faster."""
        return self.after_ms / self.before_ms


@dataclass(frozen=True)
class Comparison:
    changes: list[Change]
    only_before: list[Key]
    only_after: list[Key]
    same_machine: bool  # every device measured in both ran on the same machine and library versions


def load_run(path: Path) -> dict:
    """A run directory's results.json (or the file itself), checked for its schema."""
    file = path / "results.json" if path.is_dir() else path
    try:
        document = json.loads(file.read_text())
    except FileNotFoundError as err:
        raise DataError(f"{path}: no results.json there; give a run directory made by edgeopt run") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{file}: not a readable results.json ({err})") from err
    version = document.get("schema_version") if isinstance(document, dict) else None
    if version not in READABLE:
        raise DataError(
            f"{file}: results schema {version}, this edgeopt reads {READABLE[0]} to {READABLE[-1]}; re-run its recipe to compare"
        )
    return document


def compare(before: dict, after: dict, threshold: float = 0.02) -> Comparison:
    """Rows of the same device, artifact, runtime, batch and threads: two devices' numbers
    are never compared with each other."""
    old, new = _rows(before), _rows(after)
    old_machines, new_machines = _machines(before), _machines(after)
    changes = []
    for key in old.keys() & new.keys():
        a, b = old[key], new[key]
        ratio = b["p50_ms"] / a["p50_ms"]
        if b["p50_ci_ms"][1] < a["p50_ci_ms"][0] and ratio < 1 - threshold:
            verdict = "faster"
        elif b["p50_ci_ms"][0] > a["p50_ci_ms"][1] and ratio > 1 + threshold:
            verdict = "slower"
        else:
            verdict = "within noise"
        changes.append(Change(key, a["p50_ms"], b["p50_ms"], verdict))
    return Comparison(
        changes=sorted(changes, key=lambda c: c.ratio),
        only_before=sorted(old.keys() - new.keys()),
        only_after=sorted(new.keys() - old.keys()),
        same_machine=all(old_machines[d] == new_machines[d] for d in old_machines.keys() & new_machines.keys()),
    )


def _machines(document: dict) -> dict[str, tuple]:
    """Each device's machine: CPU, cores, GPUs and ONNX Runtime version."""
    found = {d["name"]: d["fingerprint"] for d in document.get("devices", []) if d.get("fingerprint")}
    found.setdefault("local", document["machine"])
    return {
        name: (m["cpu"], m["logical_cores"], tuple(m["gpus"]), m["libraries"].get("onnxruntime"))
        for name, m in found.items()
    }


def _rows(document: dict) -> dict[Key, dict]:
    return {
        (r.get("device", "local"), r["variant"], r["runtime"], r["batch"], r["threads"]): r["latency"]
        for r in document["rows"]
    }
