"""The `quantize_nncf` stage: NNCF's post-training INT8 quantization, the route NNCF and
OpenVINO document for the CPU (the FP32 ONNX read into OpenVINO, quantized on the recipe's
calibration samples, saved as OpenVINO IR), so the report holds the peer's INT8 beside
edgeopt's own. The IR (model.xml + model.bin) runs on the OpenVINO runtimes only.

The OpenVINO backend, not NNCF's ONNX one: on all-MiniLM-L6-v2 (300 samples) it took half
the CPU time (43 s against 84 s) and 40% of the memory (0.44 against 1.09 GB) for the same
accuracy on OpenVINO (mean cosine 0.9953 both).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import re
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.verify import verify_against
from edgeopt.core.artifact import IO, Artifact, Format, Precision
from edgeopt.core.context import StageContext
from edgeopt.core.data import Split
from edgeopt.core.errors import DataError, ExportError, first_line
from edgeopt.core.numeric import Tolerance
from runtimes.openvino import port_name

log = logging.getLogger(__name__)

AUTOMATIC_NAME = re.compile(r"([A-Za-z]+)_\d+")


class NncfModelType(StrEnum):
    NONE = "none"
    TRANSFORMER = "transformer"


class NncfPreset(StrEnum):
    DEFAULT = "default"
    PERFORMANCE = "performance"
    MIXED = "mixed"


class QuantizeNncfOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: NncfModelType = Field(
        NncfModelType.NONE,
        description="transformer: NNCF's scheme for transformers (SmoothQuant, attention MatMuls quantized, "
        "the rest of the block left alone); none: its generic one",
    )
    preset: NncfPreset = Field(
        NncfPreset.DEFAULT,
        description="performance: symmetric activations; mixed: asymmetric activations, symmetric weights; "
        "default: NNCF's choice for the model type (mixed for transformers, else performance)",
    )
    samples: int = Field(300, ge=1, description="calibration samples (NNCF's subset_size), drawn by seed")
    seed: int = Field(0, description="fixes which calibration samples are used")
    fast_bias_correction: bool = Field(True, description="NNCF's fast bias correction (false: its slower, full one)")
    tolerance: Tolerance = Field(
        Tolerance(atol=1.0, rtol=1.0, min_cosine=0.99), description="agreement with the float model on the probe"
    )


def quantize_nncf(artifact: Artifact, options: QuantizeNncfOptions, context: StageContext) -> Artifact:
    if context.calibration is None:
        raise DataError("quantize_nncf needs calibration samples (a dataset with real inputs)")
    if artifact.precision is not Precision.FP32:
        raise ExportError(f"{artifact.path}: quantize_nncf takes an fp32 model, this one is {artifact.precision}")
    try:
        import nncf
        import openvino as ov
    except ImportError as err:
        raise ExportError(f"quantize_nncf needs NNCF and OpenVINO ({err}): pip install 'edgeopt[openvino]'") from err
    items = calibration_items(context.calibration, artifact.io, options.samples, options.seed)
    try:
        # OpenVINO's documented route reads the model with convert_model, which also runs its
        # offline transformations (fused attention, GELU) before NNCF places its quantizers
        model = ov.convert_model(str(artifact.path))
        with quiet_nncf(context.verbose):
            quantized = nncf.quantize(
                model,
                nncf.Dataset(items),
                model_type=nncf.ModelType.TRANSFORMER if options.model_type is NncfModelType.TRANSFORMER else None,
                preset=None if options.preset is NncfPreset.DEFAULT else nncf.QuantizationPreset(str(options.preset)),
                subset_size=len(items),
                fast_bias_correction=options.fast_bias_correction,
                target_device=nncf.TargetDevice.CPU,
            )
    except Exception as err:  # openvino's RuntimeError, nncf's own errors
        raise ExportError(f"{artifact.path}: quantize_nncf failed: {first_line(err)}") from err
    number_layers(quantized)
    path = context.out_dir / "model.xml"
    # compress_to_fp16=False: the float constants left (biases, normalization) stay FP32, as in
    # the source; save_model's default stores them as FP16
    ov.save_model(quantized, str(path), compress_to_fp16=False)
    result = Artifact(
        path=path,
        format=Format.OPENVINO,
        precision=Precision.INT8_QDQ,
        stage="quantize_nncf",
        options=options.model_dump(mode="json"),
        parent=artifact.sha256,
        io=same_io(quantized, artifact),
        modules=artifact.modules,
        facts={**ir_facts(quantized, path), "calibration_samples": len(items), **versions(nncf, ov)},
    )
    verification = verify_against(artifact, result, context.probe, options.tolerance, context.verbose)
    return dataclasses.replace(result, verification=verification)


@contextlib.contextmanager
def quiet_nncf(verbose: bool):
    """stdout carries results: NNCF draws progress bars there, and its logger has a handler
    of its own on stdout; its records go to edgeopt's log (stderr) instead, INFO only with -v."""
    logger = logging.getLogger("nncf")
    saved = logger.handlers[:], logger.propagate, logger.level
    logger.handlers, logger.propagate = [], True
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


def calibration_items(split: Split, model_io: IO, samples: int, seed: int) -> list[dict[str, np.ndarray]]:
    """One sample a call, as NNCF feeds them (a model with a fixed batch: that many), drawn by
    a seeded permutation and cast to the model's input dtypes."""
    missing = [spec.name for spec in model_io.inputs if spec.name not in split.inputs]
    if missing:
        raise DataError(f"calibration data has no array for input(s) {', '.join(missing)}")
    fixed = model_io.inputs[0].shape[0] if model_io.inputs[0].shape else None
    batch = fixed if isinstance(fixed, int) else 1
    count = min(samples, len(split)) // batch
    if count == 0:
        raise DataError(f"calibration data holds {len(split)} samples; the model takes batches of {batch}")
    order = np.random.default_rng(seed).permutation(len(split))[: count * batch]
    return [
        {
            spec.name: split.inputs[spec.name][np.sort(order[i * batch : (i + 1) * batch])].astype(spec.dtype)
            for spec in model_io.inputs
        }
        for i in range(count)
    ]


def number_layers(model) -> None:
    """Name the layers OpenVINO named itself (`Constant_31164`: a counter of every node this
    process has made) by their place in the graph, so the same model and samples give the
    same bytes whatever ran before in the process (a resumed run, a second NNCF variant)."""
    for index, op in enumerate(model.get_ordered_ops()):
        named = AUTOMATIC_NAME.fullmatch(op.get_friendly_name())
        if named:
            op.set_friendly_name(f"{named[1]}_{index}")


def same_io(model, source: Artifact) -> IO:
    """The source's inputs and outputs (with their symbolic dim names), once the IR is
    checked to keep their names."""
    names = ([port_name(p) for p in model.inputs], [port_name(p) for p in model.outputs])
    expected = ([s.name for s in source.io.inputs], [s.name for s in source.io.outputs])
    if sorted(names[0]) != sorted(expected[0]) or sorted(names[1]) != sorted(expected[1]):
        raise ExportError(f"{source.path}: quantize_nncf changed the model's input/output names {expected} → {names}")
    return source.io


def ir_facts(model, path) -> dict:
    """What the report shows of an IR: size on disk (.xml and .bin), operations, weights."""
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() not in ("Parameter", "Result", "Constant")]
    histogram: dict[str, int] = {}
    for op in ops:
        histogram[op.get_type_name()] = histogram.get(op.get_type_name(), 0) + 1
    constants = [op for op in model.get_ordered_ops() if op.get_type_name() == "Constant"]
    return {
        "size_bytes": path.stat().st_size + path.with_suffix(".bin").stat().st_size,
        "node_count": len(ops),
        "op_histogram": dict(sorted(histogram.items())),
        "parameters": sum(int(np.prod(op.get_output_shape(0))) for op in constants),
    }


def versions(nncf, ov) -> dict:
    return {"nncf_version": nncf.__version__, "openvino_version": ov.__version__.split("-")[0]}
