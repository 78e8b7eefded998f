"""The report's devices: each measuring machine's rows apart, under its fingerprint, its INT8
target and how its measurement went. A run on this machine alone reads as before."""

from __future__ import annotations

LOCAL_ONLY = [{"name": "local", "kind": "local", "status": "ok", "faults": []}]


def device_groups(document: dict) -> list[tuple[dict, list[dict]]]:
    """(device record, its rows) in the order the devices were measured."""
    records = document.get("devices") or LOCAL_ONLY
    return [(d, [r for r in document["rows"] if r.get("device", "local") == d["name"]]) for d in records]


def per_device(document: dict) -> bool:
    """Whether the report needs a section per device: a device other than this machine."""
    return any(d["name"] != "local" for d in document.get("devices") or LOCAL_ONLY)


def fingerprint_text(machine: dict) -> str:
    libraries = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items() if v)
    return (
        f"{machine['cpu']} ({machine['arch']}; {machine['logical_cores']} logical cores; "
        f"{' '.join(machine['cpu_flags']) or 'no SIMD flags read'}), {machine['memory_gb']} GB; "
        f"GPU: {', '.join(machine['gpus']) or 'none'}; {machine['os']}, Python {machine['python']}; {libraries}"
    )


def device_facts(device: dict, document: dict) -> list[str]:
    """Sentences about one device: where it is, its fingerprint, its INT8 target, its status."""
    where = "This machine" if device["kind"] == "local" else f"Over SSH at `{device['ssh']}`, Python {device['python']}"
    machine = device.get("fingerprint") or (document["machine"] if device["kind"] == "local" else None)
    facts = [f"{where}: {fingerprint_text(machine)}." if machine else f"{where}: not reached."]
    if device.get("target"):
        int8 = [
            name
            for name in device.get("artifacts", [])
            if document["artifacts"].get(name, {}).get("precision", "").startswith("int8")
            and document["artifacts"][name].get("target") == device["target"]
        ]
        built = f": {', '.join(int8)}" if int8 else ""
        facts.append(f"INT8 built for its target {device['target']} ({device.get('target_reason')}){built}.")
    if device["kind"] != "local" and machine:
        code = f", sha256 {device['code_sha256'][:12]}" if device.get("code_sha256") else ""
        facts.append(
            f"Timed there by edgeopt's isolated, interleaved harness (shipped as one archive{code}, run with the "
            "device's Python); accuracy from its outputs, scored here."
        )
    status = device["status"]
    if status == "retried":
        facts.append(f"A fault discarded its first attempt, which was run again: {'; '.join(device['faults'])}.")
    elif status != "ok":
        facts.append(f"**Not measured ({status})**: {'; '.join(device['faults'])}.")
    return facts
