from edgeopt.core.cpu import cpu_model_and_flags
from edgeopt.core.machine import fingerprint

CPUINFO = """\
processor\t: 0
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx avx2 fma f16c avx512f avx512bw avx512_vnni
"""


def test_cpu_flags_read_from_cpuinfo():
    model, flags = cpu_model_and_flags(CPUINFO)
    assert model == "AMD EPYC 9B14"
    assert flags == ["avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni"]


def test_fingerprint_names_the_libraries_and_cores():
    machine = fingerprint()
    assert machine["logical_cores"] >= 1
    assert machine["libraries"]["onnxruntime"] and machine["libraries"]["torch"]
    assert isinstance(machine["gpus"], list)
