"""The report's compression section: what each compress stage did, where its exported
form stands in latency against the source model, and the latency-vs-accuracy front."""

from __future__ import annotations


def compression_section(document: dict) -> list[str]:
    artifacts = document["artifacts"]
    compressed = {name: a for name, a in artifacts.items() if "compression" in a["facts"] or "codebook" in a["facts"]}
    if not compressed:
        return []
    lines = ["", "## Compression", ""]
    for name, artifact in compressed.items():
        facts = artifact["facts"]
        summary = (facts.get("compression") or facts["codebook"])["summary"]
        lines.append(f"- **{name}** ({artifact['stage']}): {summary}.")
    lines += [f"- {note}" for note in dense_notes(document)]
    lines += _front(document)
    return lines


def _children(artifacts: dict, name: str) -> list[str]:
    sha = artifacts[name]["sha256"]
    return [child for child, a in artifacts.items() if a["parent"] == sha]


def dense_notes(document: dict) -> list[str]:
    """Zeros and shared values change no kernel: say so beside the measured latency."""
    artifacts = document["artifacts"]
    p50 = {
        (r["variant"], _on(r["runtime"], r), r["batch"], r["threads"]): r["latency"]["p50_ms"] for r in document["rows"]
    }
    notes = []
    for name, artifact in artifacts.items():
        compression = artifact["facts"].get("compression", {})
        if not compression.get("dense_kernels"):
            continue
        zeros = artifact["facts"].get("zero_parameters", 0) / max(artifact["facts"].get("parameters", 1), 1)
        variants = (name, *_children(artifacts, name))
        measured = [
            f"{variant} on {runtime} batch {batch} × {threads} threads {value:.3f} ms"
            for (variant, runtime, batch, threads), value in p50.items()
            if variant in variants
        ]
        notes.append(
            f"**{name}: no speed from {compression['method']}**{f' ({zeros:.0%} of parameters zero)' if zeros else ''}. ONNX Runtime's "
            "CPU kernels and PyTorch eager are dense: a zero or a repeated weight costs the same multiply-add, "
            "so latency matches the unpruned model; the gain is in the compressed file "
            f"(pack_codebook) or on sparse-aware hardware. Measured: {'; '.join(measured) or 'not benchmarked'}."
        )
    return notes


def _front(document: dict) -> list[str]:
    """Per runtime, at the largest batch and thread count: the artifacts no other beats on both
    p50 and top-1."""
    rows = [r for r in document["rows"] if r["accuracy"]["top1"] is not None]
    if not rows:
        return []
    batch, threads = max(r["batch"] for r in rows), max(r["threads"] for r in rows)
    lines = [
        "",
        f"Latency-vs-accuracy front (batch {batch}, {threads} threads; faster and at least as accurate as everything below it):",
        "",
    ]
    for runtime in dict.fromkeys(_on(r["runtime"], r) for r in rows):  # a device's rows apart from another's
        points = [
            r for r in rows if _on(r["runtime"], r) == runtime and r["batch"] == batch and r["threads"] == threads
        ]
        front = [
            r
            for r in points
            if not any(
                o["latency"]["p50_ms"] <= r["latency"]["p50_ms"]
                and o["accuracy"]["top1"] >= r["accuracy"]["top1"]
                and (o["latency"]["p50_ms"], o["accuracy"]["top1"]) != (r["latency"]["p50_ms"], r["accuracy"]["top1"])
                for o in points
            )
        ]
        front.sort(key=lambda r: r["latency"]["p50_ms"])
        shown = ", ".join(
            f"{r['variant']} ({r['latency']['p50_ms']:.3f} ms, {100 * r['accuracy']['top1']:.2f}%)" for r in front
        )
        lines.append(f"- {runtime}: {shown}")
    return lines


def _on(runtime: str, row: dict) -> str:
    """The runtime, and the device where it is not this machine."""
    device = row.get("device", "local")
    return runtime if device == "local" else f"{runtime} on {device}"
