"""The report's notes on INT8 artifacts: their flavour and target, what an accuracy budget
kept in float and what that costs, and where an INT8 artifact is not faster than its parent."""

from __future__ import annotations

from bench.recommend import float_ancestor


def int8_notes(document: dict) -> list[str]:
    """Say plainly where an INT8 artifact is not faster than its float parent, and why."""
    artifacts = document["artifacts"]
    measured = {row["variant"] for row in document["rows"]}
    p50 = {(r["variant"], _on(r), r["batch"], r["threads"]): r["latency"]["p50_ms"] for r in document["rows"]}
    vnni = {"avx512_vnni", "avx_vnni"} & set(document["machine"]["cpu_flags"])
    notes = []
    for name, artifact in artifacts.items():
        if not artifact["precision"].startswith("int8"):
            continue
        parent = float_ancestor(name, artifacts, measured)  # an INT8 parent's own (trim_padding of INT8)
        budget = artifact["facts"].get("budget")
        if budget:
            notes.append(budget_note(name, budget, document))
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
    signed = facts.get("signed_activations")
    signed = (
        f"; the {signed['tensors']} activations whose range holds negative values in symmetric INT8" if signed else ""
    )
    notes = [
        f"{name}: {calibration}built for {target}: {flavour['activations']} activations, "
        f"{flavour['weights']} weights{' (7-bit)' if flavour['reduce_range'] else ''}; {flavour['reason']}{signed}."
    ]
    # each measuring machine's own CPU target (not the one its INT8 was asked for)
    targets = {d["name"]: (d.get("fingerprint") or {}).get("target") for d in document.get("devices", [])}
    targets.setdefault("local", document["machine"].get("target"))
    for device, host in targets.items():
        measured = sorted(
            {
                r["runtime"]
                for r in document["rows"]
                if r["variant"] == name and r["runtime"].endswith("cpu") and r.get("device", "local") == device
            }
        )
        if host and target != host and measured:
            where = "this" if device == "local" else f"device {device}'s"
            notes.append(
                f"**{name} was built for {target} but measured on {where} {host} machine** ({', '.join(measured)}): "
                f"its latency and accuracy there come from that CPU's INT8 kernels, not {target}'s; "
                f"measure it on a {target} machine, or build it for {host} to ship there."
            )
    return notes


def _on(row: dict) -> str:
    """The runtime, and the device where it is not this machine: two devices' rows never pair."""
    device = row.get("device", "local")
    return row["runtime"] if device == "local" else f"{row['runtime']} on {device}"


def budget_note(name: str, budget: dict, document: dict) -> str:
    """What an accuracy budget kept in float, and what that costs: its batch-1 rows against
    those of the same quantization without the budget, where the run built one."""

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
    if budget.get("all_float"):
        return text + "; that is every quantized node: **it computes in float**, no INT8 is left."
    sibling = _without_budget(name, document["artifacts"])
    if sibling is None:
        return text + "; add a variant without the budget to measure what keeping them in float costs."
    p50 = {(r["variant"], _on(r), r["threads"]): r["latency"]["p50_ms"] for r in document["rows"] if r["batch"] == 1}
    costs = [
        f"{runtime} × {threads} {ms:.3f} ms against {p50[(sibling, runtime, threads)]:.3f} ms "
        f"({100 * (ms / p50[(sibling, runtime, threads)] - 1):+.0f}%)"
        for (variant, runtime, threads), ms in p50.items()
        if variant == name and (sibling, runtime, threads) in p50
    ]
    return text + (f"; batch-1 p50 against {sibling}, all-INT8: {', '.join(costs)}." if costs else ".")


def _without_budget(name: str, artifacts: dict) -> str | None:
    """The artifact quantized like `name` (same parent, stage and options) but without its budget."""

    def rest(options: dict) -> dict:
        return {key: value for key, value in options.items() if key not in ("budget", "tolerance")}

    me = artifacts[name]
    for other, artifact in artifacts.items():
        same = (artifact["parent"], artifact["stage"], rest(artifact["options"])) == (
            me["parent"],
            me["stage"],
            rest(me["options"]),
        )
        if other != name and same and not artifact["options"].get("budget"):
            return other
    return None
