import pytest

from edgeopt.core.targets import Target, host_target, resolve


@pytest.mark.parametrize(
    ("arch", "flags", "expected"),
    [
        ("x86_64", ["avx", "avx2", "fma"], Target.X86_AVX2),
        ("x86_64", ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"], Target.X86_VNNI),
        ("x86_64", ["avx2", "avx_vnni"], Target.X86_VNNI),
        ("x86_64", [], Target.X86_AVX2),
        ("aarch64", ["asimddp", "i8mm"], Target.ARM64),
        ("arm64", [], Target.ARM64),
    ],
)
def test_host_target_reads_the_architecture_and_instructions(arch, flags, expected):
    target, why = host_target(arch, flags)
    assert target is expected and arch in why


def test_resolve_takes_the_default_then_this_host():
    assert resolve(Target.ARM64) is Target.ARM64
    assert resolve(None, Target.TENSORRT) is Target.TENSORRT
    assert resolve("x86-vnni", Target.ARM64) is Target.X86_VNNI
    assert resolve(None) is host_target()[0] and resolve(Target.AUTO, Target.ARM64) is host_target()[0]
