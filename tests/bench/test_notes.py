import dataclasses

from bench.report.notes import target_notes
from edgeopt.core.targets import Target
from exporter.quantize import choose_flavour


def _note(facts: dict) -> str:
    flavour = dataclasses.asdict(choose_flavour(Target.X86_VNNI))
    artifact = {"facts": {"method": "percentile", "calibration_samples": 128, "flavour": flavour, **facts}}
    document = {"devices": [], "machine": {"target": "x86-vnni"}, "rows": []}
    return target_notes("int8", {**artifact, "target": "x86-vnni"}, document)[0]


def test_the_flavour_note_says_when_signed_activations_were_built_symmetric_int8():
    assert _note({}).endswith("full 8-bit weights.")
    signed = _note({"signed_activations": {"type": "int8", "symmetric": True, "tensors": 12}})
    assert signed.endswith("; the 12 activations whose range holds negative values in symmetric INT8.")
