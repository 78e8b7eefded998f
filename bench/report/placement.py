"""Where a run on a Ray cluster built each artifact and measured each row (report lines)."""

from __future__ import annotations


def placement_lines(document: dict) -> list[str]:
    """Sentences for the report; none for a run that used no cluster."""
    executor = document.get("executor") or {}
    if executor.get("kind") != "ray":
        return []
    nodes = executor["nodes"]
    lines = [
        f"Ray cluster at {executor['address']} (asked for: {executor['asked']}), {nodes} node{'s' * (nodes != 1)}."
    ]
    built: dict[str, list[str]] = {}
    for name, artifact in document["artifacts"].items():
        built.setdefault(artifact["facts"].get("built_on") or "not recorded", []).append(name)
    # a cached artifact names where it was built first, in this run or an earlier one
    lines += [f"Built on {where}: {', '.join(names)}." for where, names in built.items()]
    measured: dict[str, list[str]] = {}
    for row in document["rows"]:
        names = measured.setdefault(row.get("measured_on") or "not recorded", [])
        if row["variant"] not in names:
            names.append(row["variant"])
    lines += [f"Measured on {where}: {', '.join(names)}." for where, names in measured.items()]
    return lines
