"""`ov-cpu-bf16`: OpenVINO on the CPU with its float layers in BF16 (INT8 layers stay INT8).

BF16 is a runtime setting here, not an artifact: OpenVINO's CPU plugin converts a float
model's weights and activations to BF16 when it compiles it (INFERENCE_PRECISION_HINT),
which is what it does by default on CPUs with BF16 instructions. It needs AVX-512-BF16 or
AMX-BF16; elsewhere the plugin silently compiles f32, so the probe asks the plugin whether
it lists BF16, and a session whose compiled model does not read back bf16 is refused
(runtimes/openvino.py) rather than measured as BF16.
"""

from __future__ import annotations

import dataclasses

from edgeopt.core.artifact import Artifact
from edgeopt.core.cpu import cpu_model_and_flags
from runtimes import openvino
from runtimes.base import Availability, SessionOptions

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def probe(device: str) -> Availability:
    base = openvino.probe(device)
    if not base.ok:
        return base
    return bf16_availability(openvino.capabilities(device) or [], cpu_model_and_flags()[1], base.reason)


def bf16_availability(capabilities: list[str], flags: list[str], base: str) -> Availability:
    """Whether the CPU plugin computes BF16 here: it says so in its capabilities."""
    if "BF16" in capabilities:
        return Availability(True, f"{base}, BF16 ({', '.join(f for f in BF16_FLAGS if f in flags) or 'BF16'})")
    return Availability(
        False,
        f"no BF16 on this CPU: OpenVINO's CPU plugin lists {', '.join(capabilities)} "
        f"(BF16 needs {' or '.join(BF16_FLAGS)})",
    )


def load(artifact: Artifact, device: str, options: SessionOptions) -> openvino.OvSession:
    return openvino.load(artifact, device, dataclasses.replace(options, bf16=True))
