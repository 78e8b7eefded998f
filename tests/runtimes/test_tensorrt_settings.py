"""TensorRT build choices, checked without TensorRT: version features, flags per
precision, profiles from symbolic dims, and engine metadata compatibility."""

import pytest

from edgeopt.core.artifact import Precision, TensorSpec
from edgeopt.core.errors import RecipeError, RuntimeUnavailable
from runtimes.tensorrt import timing_cache_name
from runtimes.tensorrt_settings import (
    Device,
    DimRange,
    EngineMeta,
    build_flags,
    derive_profile,
    features,
    mismatch,
)

IMAGE = (TensorSpec("image", ("batch", 1, 8, 8), "float32"),)
TOKENS = tuple(TensorSpec(n, ("batch", "sequence"), "int64") for n in ("input_ids", "attention_mask"))
H200 = Device("10.8.0.43", "NVIDIA H200", "9.0")


@pytest.mark.parametrize(("version", "fp16_flag"), [("10.0.1.6", True), ("10.13.3.9", True), ("11.4.1", False)])
def test_features_weakly_typed_fp16_exists_on_tensorrt_10_only(version, fp16_flag):
    assert features(version).weakly_typed_fp16 is fp16_flag


@pytest.mark.parametrize("version", ["8.6.1", "9.3.0", "12.0.0", "nonsense"])
def test_features_refuses_versions_other_than_10_and_11(version):
    with pytest.raises(RuntimeUnavailable, match="supports TensorRT 10 and 11"):
        features(version)


@pytest.mark.parametrize("version", ["10.8.0", "11.4.1"])
@pytest.mark.parametrize("source", [Precision.FP32, Precision.FP16, Precision.INT8_QDQ])
def test_build_flags_from_source_are_strongly_typed_without_precision_flags(version, source):
    flags = build_flags(version, source, fp16=False)
    assert flags.strongly_typed and flags.builder_flags == () and flags.precision is source


def test_build_flags_fp16_over_fp32_is_weakly_typed_on_tensorrt_10():
    flags = build_flags("10.8.0", Precision.FP32, fp16=True)
    assert not flags.strongly_typed and flags.builder_flags == ("FP16",) and flags.precision is Precision.FP16


def test_build_flags_fp16_over_fp32_on_tensorrt_11_points_to_the_fp16_artifact():
    with pytest.raises(RecipeError, match=r"has no BuilderFlag\.FP16.*convert_fp16 artifact"):
        build_flags("11.4.1", Precision.FP32, fp16=True)


def test_build_flags_refuses_dynamic_int8_and_fp16_over_a_non_fp32_source():
    with pytest.raises(RecipeError, match=r"INT8 from QDQ only.*target: tensorrt"):
        build_flags("10.8.0", Precision.INT8_DYNAMIC, fp16=False)
    with pytest.raises(RecipeError, match="takes an fp32 artifact, this one is int8-qdq"):
        build_flags("10.8.0", Precision.INT8_QDQ, fp16=True)


def test_derive_profile_takes_symbolic_dims_from_the_ranges_and_keeps_fixed_ones():
    profile = derive_profile(IMAGE, {"batch": DimRange(1, 32, 64)}, {"image": (8, 1, 8, 8)})
    assert profile == {"image": ((1, 1, 8, 8), (32, 1, 8, 8), (64, 1, 8, 8))}


def test_derive_profile_fixes_an_unranged_dim_at_its_size_in_the_data():
    observed = {"input_ids": (8, 128), "attention_mask": (8, 128)}
    profile = derive_profile(TOKENS, {"batch": DimRange(1, 8, 64)}, observed)
    assert profile["attention_mask"] == ((1, 128), (8, 128), (64, 128))


def test_derive_profile_names_a_dim_it_cannot_size():
    with pytest.raises(RecipeError, match="input 'input_ids' has symbolic dim 'sequence'; give its range"):
        derive_profile(TOKENS, {"batch": DimRange(1, 8, 64)}, {})


def test_derive_profile_refuses_an_unordered_range():
    with pytest.raises(RecipeError, match="need 1 <= min <= opt <= max, got 4/2/8"):
        derive_profile(IMAGE, {"batch": DimRange(4, 2, 8)}, {})


def _meta(device: Device) -> EngineMeta:
    profile = {"image": ((1, 1, 8, 8), (32, 1, 8, 8), (64, 1, 8, 8))}
    io = {"inputs": [{"name": "image", "shape": ["batch", 1, 8, 8], "dtype": "float32"}], "outputs": []}
    return EngineMeta(device, "ab" * 32, Precision.INT8_QDQ, True, (), profile, 1 << 30, io)


def test_engine_meta_round_trips_through_json():
    meta = _meta(H200)
    assert EngineMeta.from_json(meta.to_json()) == meta


def test_mismatch_is_none_on_the_machine_that_built_the_engine():
    assert mismatch(_meta(H200), H200) is None


@pytest.mark.parametrize(
    ("here", "says"),
    [
        (Device("10.9.0.34", "NVIDIA H200", "9.0"), "TensorRT 10.9.0.34 on NVIDIA H200"),
        (Device("10.8.0.43", "NVIDIA A100-SXM4-80GB", "8.0"), "NVIDIA A100-SXM4-80GB (compute 8.0)"),
    ],
)
def test_mismatch_names_both_machines_when_version_or_gpu_differ(here, says):
    reason = mismatch(_meta(H200), here)
    assert reason.startswith("engine built with TensorRT 10.8.0.43 on NVIDIA H200 (compute 9.0)") and says in reason


def test_timing_cache_name_is_one_file_name_per_version_and_gpu():
    name = timing_cache_name(Device("10.8.0", "NVIDIA GeForce RTX 4090/PCIe", "8.9"))
    assert name == "tensorrt-10.8.0-NVIDIA-GeForce-RTX-4090-PCIe-sm8.9.cache"


def test_engine_record_of_a_fresh_artifact_equals_the_one_read_back(tmp_path):
    """build_trt stores EngineMeta.to_json() on the artifact it returns; a later run reads
    artifact.json back: the two must agree (tuples would not)."""
    import dataclasses

    from edgeopt.core.artifact import IO, Artifact, Format

    io = IO((TensorSpec("image", ("batch", 1, 8, 8), "float32"),), (TensorSpec("logits", ("batch", 10), "float32"),))
    meta = dataclasses.replace(_meta(H200), io=dataclasses.asdict(io))  # as build_trt makes it
    (tmp_path / "model.engine").write_bytes(b"engine")
    fresh = Artifact(
        tmp_path / "model.engine",
        Format.TRT_ENGINE,
        Precision.INT8_QDQ,
        "build_trt",
        {},
        None,
        io,
        engine=meta.to_json(),
    )
    fresh.save()
    assert Artifact.load(tmp_path).engine == fresh.engine
    assert fresh.engine["profile"]["image"]["max"] == [64, 1, 8, 8]
