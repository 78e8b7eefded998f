"""The stage table: name → (function, options class, version). Explicit, no registration magic.

A stage is `function(artifact, options, context) -> Artifact`. Bumping `version`
invalidates cached outputs of older code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from compress.codebook import PackCodebookOptions, pack_codebook
from compress.distill import DistillOptions, distill
from compress.ensemble import EnsembleOptions, ensemble
from compress.prune import (
    PruneChannelsOptions,
    PruneLayersOptions,
    PruneMagnitudeOptions,
    prune_channels,
    prune_layers,
    prune_magnitude,
)
from compress.prune_ffn import PruneFfnOptions, prune_ffn
from compress.share import ShareWeightsOptions, share_weights
from compress.sweep import TrainStructureOptions, train_structure
from edgeopt.core.artifact import Format
from exporter.bf16 import ConvertBf16Options, convert_bf16
from exporter.engine import BuildTrtOptions, build_trt, with_batch_range
from exporter.fp16 import ConvertFp16Options, convert_fp16
from exporter.quantize import QuantizeDynamicOptions, QuantizeInt8Options, quantize_dynamic, quantize_int8
from exporter.quantize_nncf import QuantizeNncfOptions, quantize_nncf
from exporter.remove_padding import RemovePaddingOptions, remove_padding
from exporter.simplify import SimplifyOptions, simplify
from exporter.smooth import SmoothActivationsOptions, smooth_activations
from exporter.torch_export import ExportOnnxOptions, export_onnx
from exporter.transformer import OptimizeTransformerOptions, optimize_transformer
from exporter.trim_padding import TrimPaddingOptions, trim_padding


@dataclass(frozen=True)
class Stage:
    function: Callable
    options: type[BaseModel]
    version: int
    accepts: Format
    produces: Format
    description: str
    calibrated: bool = False  # reads the calibration samples (its key includes them)
    trained: bool = False  # trains or fine-tunes on the training samples (its key includes them)
    # a runtime the stage needs: where it is missing the variant (and what is built from
    # it) is skipped with the runtime's reason rather than failing the run
    requires: str | None = None
    # (options, parent, benchmarked batch sizes, every batch size run) -> options with
    # the recipe's defaults filled in, so the cache key and the record show them
    complete_options: Callable | None = None
    # artifact -> why a cached output cannot be used on this machine (then it is rebuilt)
    stale: Callable | None = None


def _stale_engine(artifact) -> str | None:
    from runtimes.tensorrt import stale_reason

    return stale_reason(artifact.path)


STAGES: dict[str, Stage] = {
    # 4: traced from canonical copies of the probe (a size-1 dim's stride changed some graphs' names)
    "export_onnx": Stage(
        export_onnx, ExportOnnxOptions, 4, Format.TORCH, Format.ONNX, "PyTorch → ONNX, verified against PyTorch"
    ),
    "simplify": Stage(
        simplify, SimplifyOptions, 3, Format.ONNX, Format.ONNX, "fold constants, drop dead nodes, fuse; verified"
    ),
    "smooth_activations": Stage(
        smooth_activations,
        SmoothActivationsOptions,
        3,
        Format.TORCH,
        Format.TORCH,
        "activation outliers moved into Linear weights (SmoothQuant), before INT8",
        calibrated=True,
    ),
    "optimize_transformer": Stage(
        optimize_transformer,
        OptimizeTransformerOptions,
        1,
        Format.ONNX,
        Format.ONNX,
        "ONNX Runtime's transformer fusions (attention, LayerNorm, GELU); verified",
    ),
    "convert_fp16": Stage(
        convert_fp16, ConvertFp16Options, 4, Format.ONNX, Format.ONNX, "FP32 → FP16, overflow-prone nodes kept FP32"
    ),
    "convert_bf16": Stage(
        convert_bf16,
        ConvertBf16Options,
        1,
        Format.ONNX,
        Format.ONNX,
        "FP32 weights → BF16 (BF16 compute where the runtime has it), verified in BF16 arithmetic",
    ),
    "trim_padding": Stage(
        trim_padding,
        TrimPaddingOptions,
        1,
        Format.ONNX,
        Format.ONNX,
        "token inputs sliced to the batch's longest real sequence, read off the attention mask",
    ),
    "remove_padding": Stage(
        remove_padding,
        RemovePaddingOptions,
        4,  # 2: a batch of padding alone computes its first position; 3: attention per row or padded;
        # 4: per-row attention slices the token axis alone (before, each row's slice copied all the tokens)
        Format.TORCH,
        Format.TORCH,
        "a BERT-style encoder run on the batch's real tokens only, packed; attention padded or per row",
    ),
    "quantize_int8": Stage(
        quantize_int8,
        QuantizeInt8Options,
        10,  # 10: a budget puts back in INT8 what it holds without
        Format.ONNX,
        Format.ONNX,
        "static INT8 (QDQ), calibrated",
        calibrated=True,
    ),
    "quantize_dynamic": Stage(
        quantize_dynamic,
        QuantizeDynamicOptions,
        8,  # 8: a Gemm the budget keeps stays float (7: a budget puts back what it holds without)
        Format.ONNX,
        Format.ONNX,
        "INT8 weights, activations per call",
        calibrated=True,  # a budget is checked on the evaluation samples
    ),
    "quantize_nncf": Stage(
        quantize_nncf,
        QuantizeNncfOptions,
        1,
        Format.ONNX,
        Format.OPENVINO,
        "NNCF's post-training INT8 on OpenVINO (OpenVINO IR), calibrated",
        calibrated=True,
        requires="ov-cpu",
    ),
    "build_trt": Stage(
        build_trt,
        BuildTrtOptions,
        1,
        Format.ONNX,
        Format.TRT_ENGINE,
        "TensorRT engine in the source's precision, verified against it",
        requires="trt",
        complete_options=with_batch_range,
        stale=_stale_engine,
    ),
    "prune_channels": Stage(
        prune_channels,
        PruneChannelsOptions,
        2,
        Format.TORCH,
        Format.TORCH,
        "remove channels and filters (dependency-aware), fine-tune",
        trained=True,
    ),
    "prune_magnitude": Stage(
        prune_magnitude,
        PruneMagnitudeOptions,
        2,
        Format.TORCH,
        Format.TORCH,
        "zero the smallest weights, fine-tune",
        trained=True,
    ),
    "prune_layers": Stage(
        prune_layers,
        PruneLayersOptions,
        2,
        Format.TORCH,
        Format.TORCH,
        "drop the layers that cost least, fine-tune",
        trained=True,
    ),
    "prune_ffn": Stage(
        prune_ffn,
        PruneFfnOptions,
        2,
        Format.TORCH,
        Format.TORCH,
        "remove a transformer's feed-forward neurons of least output variance (no fine-tuning)",
        calibrated=True,
    ),
    "distill": Stage(
        distill,
        DistillOptions,
        2,
        Format.TORCH,
        Format.TORCH,
        "train a smaller student on the model's soft targets",
        trained=True,
    ),
    "share_weights": Stage(
        share_weights,
        ShareWeightsOptions,
        2,
        Format.TORCH,
        Format.TORCH,
        "cluster each layer's weights to a codebook, tie layers",
        trained=True,
    ),
    "pack_codebook": Stage(
        pack_codebook,
        PackCodebookOptions,
        1,
        Format.ONNX,
        Format.ONNX,
        "store few-valued weights as codebook + uint8 indices; verified",
    ),
    # 3: stacking's meta-model fitted on one thread (its weights no longer follow the core count)
    "ensemble": Stage(
        ensemble,
        EnsembleOptions,
        3,
        Format.TORCH,
        Format.TORCH,
        "train members, combine them (parallel, cascade, stacking)",
        trained=True,
    ),
    "train_structure": Stage(
        train_structure,
        TrainStructureOptions,
        2,
        Format.TORCH,
        Format.TORCH,
        "rebuild the factory with other kwargs, train from scratch",
        trained=True,
    ),
}
