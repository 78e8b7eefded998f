"""The command line's arguments: the verbs, their options, and how a shape is written.

A verb's options that are also a stage's take their choices, defaults and help from the
stage's option model, so each default lives in one place.
"""

from __future__ import annotations

import argparse
import enum
import re
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from edgeopt import __version__
from edgeopt.core.errors import RecipeError
from edgeopt.core.targets import Target

PROBE_HELP = "real samples to verify on (default: seeded random)"


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors get our one line and exit 2."""

    def error(self, message: str):
        raise RecipeError(f"{self.prog}: {message}")


def _option(parser, flag: str, model: type[BaseModel], field: str, default=None, **extra) -> None:
    """An option mirroring a stage option: its default, its choices (an enum's values) and
    its description. `default` overrides where the verb's default differs (none do today)."""
    info = model.model_fields[field]
    annotation = info.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    value = info.default if default is None else default
    kwargs: dict = {"default": str(value) if isinstance(value, enum.Enum) else value, "help": info.description}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        kwargs["choices"] = [str(member) for member in annotation]
    elif annotation in (int, float):
        kwargs["type"] = annotation
    parser.add_argument(flag, **{**kwargs, **extra})


def parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgeopt", description="Prepare trained models for their deployment targets.")
    parser.add_argument("--version", action="version", version=f"edgeopt {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and results only")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logs, including the libraries'")
    parser.add_argument("--debug", action="store_true", help="show the traceback behind an error")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    _run_parser(verbs)
    _transform_parsers(verbs)
    _measure_parsers(verbs)
    recipe = verbs.add_parser("recipe", help="what a recipe may hold")
    recipe.add_argument("--schema", action="store_true", required=True, help="print the recipe's JSON schema")
    verbs.add_parser("doctor", help="what this machine can run, and why not")
    return parser


def _run_parser(verbs) -> None:
    from edgeopt.recipe import Recipe

    run = verbs.add_parser("run", help="run a recipe: build, verify, benchmark, report")
    run.add_argument("recipe", type=Path)
    run.add_argument("--output", type=Path, help="run directory (default: the recipe's output, or runs/<name>)")
    _option(run, "--target", Recipe, "target", help="the machine the models will run on (default: the recipe's)")
    run.set_defaults(target=None)
    ray_help = "build and measure as Ray tasks on this cluster: auto, local (start one for the run) or HOST:PORT"
    run.add_argument("--ray", metavar="ADDRESS", help=f"{ray_help} (default: the recipe's executor, else here)")
    _device_options(run, "measure there (repeat for several; local is this machine, the default)")


def _device_options(parser, help_text: str) -> None:
    parser.add_argument("--device", action="append", dest="devices", default=[], metavar="NAME", help=help_text)
    devices_help = "a YAML file with devices: (a recipe works too) defining the names --device may give"
    parser.add_argument("--devices", type=Path, dest="devices_file", metavar="FILE", help=devices_help)


def _transform_parsers(verbs) -> None:
    """The single-step verbs that make an artifact: export, simplify, fp16, bf16, quantize, build."""
    from exporter.engine import BuildTrtOptions
    from exporter.fp16 import ConvertFp16Options
    from exporter.quantize import QuantizeInt8Options
    from exporter.simplify import SimplifyOptions
    from exporter.torch_export import ExportOnnxOptions

    export = verbs.add_parser("export", help="export a PyTorch model to a verified ONNX file")
    export.add_argument("model", help="a built-in model name or package.module:function")
    export.add_argument("-o", "--output", type=Path, required=True)
    inputs_help = "e.g. image:batch,3,224,224:float32 (repeat per input)"
    export.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE:DTYPE", help=inputs_help)
    export.add_argument("--weights", type=Path, help="state dict for a factory model")
    _option(export, "--opset", ExportOnnxOptions, "opset")
    _option(export, "--exporter", ExportOnnxOptions, "exporter")

    keep_help = SimplifyOptions.model_fields["keep_initializers_as_inputs"].description
    simplify = _model_verb(verbs, "simplify", "simplify an ONNX model, verified against it", keep_help)
    _option(simplify, "--simplifier", SimplifyOptions, "simplifier")
    simplify.add_argument("--probe", type=Path, metavar="DATA.npz", help=PROBE_HELP)

    fp16 = _model_verb(verbs, "fp16", "convert an ONNX model to FP16, verified against it", keep_help)
    fp16.add_argument("--fp16-io", action="store_true", help="make inputs and outputs FP16 too (default: FP32)")
    keep_op_help = ConvertFp16Options.model_fields["keep_ops"].description + " (repeat)"
    fp16.add_argument("--keep-op", action="append", default=[], metavar="OP", help=keep_op_help)
    fp16.add_argument("--probe", type=Path, metavar="DATA.npz", help=PROBE_HELP)

    bf16_help = "store an ONNX model's weights in BF16, verified by BF16's arithmetic against it"
    bf16 = _model_verb(verbs, "bf16", bf16_help, keep_help)
    bf16.add_argument("--probe", type=Path, metavar="DATA.npz", help=PROBE_HELP)

    quantize = _model_verb(verbs, "quantize", "quantize an ONNX model to INT8, calibrated on real samples", keep_help)
    calibration_help = "an .npz (one array per input, samples first) or a folder of images"
    quantize.add_argument("--calibration", type=Path, metavar="DATA.npz|DIR", help=calibration_help)
    for flag, field in (("--method", "method"), ("--percentile", "percentile"), ("--samples", "samples")):
        _option(quantize, flag, QuantizeInt8Options, field)
    target_help = "the machine the INT8 model runs on (default: auto, this host)"
    _option(quantize, "--target", QuantizeInt8Options, "target", default=Target.AUTO, help=target_help)
    quantize.add_argument("--dynamic", action="store_true", help="dynamic INT8: weights only, no calibration")

    build = _model_verb(verbs, "build", "build a TensorRT engine from an ONNX model, verified against it")
    build.add_argument("--fp16", action="store_true", help="FP16 kernels over an FP32 model (TensorRT 10 only)")
    dim_help = "a symbolic dim's range (default for the batch dim: 1:1:32)"
    build.add_argument("--dim", action="append", default=[], metavar="NAME=MIN:OPT:MAX", help=dim_help)
    _option(build, "--workspace-mb", BuildTrtOptions, "workspace_mb")
    build.add_argument("--probe", type=Path, metavar="DATA.npz", help=PROBE_HELP)


def _model_verb(verbs, name: str, help_text: str, keep_help: str | None = None):
    """A verb reading IN.onnx and writing -o OUT; an ONNX → ONNX one (`keep_help`) also
    takes --keep-initializers-as-inputs."""
    verb = verbs.add_parser(name, help=help_text)
    verb.add_argument("model", type=Path, metavar="IN.onnx")
    verb.add_argument("-o", "--output", type=Path, required=True)
    if keep_help:
        verb.add_argument("--keep-initializers-as-inputs", action="store_true", help=keep_help)
    return verb


def _measure_parsers(verbs) -> None:
    bench = verbs.add_parser("bench", help="time ONNX files or engines on a runtime with random inputs")
    bench.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT")
    bench.add_argument("--runtime", action="append", dest="runtimes", metavar="ID")
    bench.add_argument("--batch", action="append", dest="batches", type=int, metavar="N")
    bench.add_argument("--threads", action="append", dest="threads", type=int, metavar="N")
    dim_help = "size of a symbolic dim other than the batch"
    bench.add_argument("--dim", action="append", default=[], metavar="NAME=SIZE", help=dim_help)
    bench.add_argument("--min-duration", type=float, default=1.0, metavar="SECONDS")
    bench.add_argument("--device", metavar="NAME", help="time them there, over SSH (default: this machine)")
    devices_help = "a YAML file with devices: (a recipe works too) defining the names --device may give"
    bench.add_argument("--devices", type=Path, dest="devices_file", metavar="FILE", help=devices_help)

    devices = verbs.add_parser("devices", help="the devices that can measure: what they are and can run")
    actions = devices.add_subparsers(dest="action", required=True, parser_class=_Parser)
    check = actions.add_parser("check", help="reach each device: its Python, runtimes, CPU flags and target, free disk")
    check.add_argument("names", nargs="*", metavar="NAME", help="devices to check (default: every one defined)")
    _device_options(check, argparse.SUPPRESS)

    compare = verbs.add_parser("compare", help="what got faster or slower beyond noise between two runs")
    compare.add_argument("before", type=Path, metavar="RUN_A")
    compare.add_argument("after", type=Path, metavar="RUN_B")
    threshold_help = "smallest p50 change reported, as a fraction (default 0.02)"
    compare.add_argument("--threshold", type=float, default=0.02, help=threshold_help)

    report = verbs.add_parser("report", help="a finished run's recommendation per target, in the terminal")
    report.add_argument("run", type=Path, metavar="RUN", help="a run directory (or its results.json)")


def parse_input(text: str):
    """NAME:SHAPE:DTYPE, e.g. image:batch,3,224,224:float32."""
    from edgeopt.core.artifact import TensorSpec
    from edgeopt.recipe import DTYPES

    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise RecipeError(f"--input '{text}' is not NAME:SHAPE[:DTYPE] (e.g. image:batch,3,224,224:float32)")
    dtype = parts[2] if len(parts) == 3 else "float32"
    if dtype not in DTYPES:
        raise RecipeError(f"--input '{text}': dtype '{dtype}' is not one of {', '.join(DTYPES)}")
    dims: list[int | str] = []
    for dim in parts[1].split(","):
        if dim.isdigit() and int(dim) > 0:
            dims.append(int(dim))
        elif re.fullmatch(r"[A-Za-z_]\w*", dim):
            dims.append(dim)
        else:
            raise RecipeError(f"--input '{text}': dim '{dim}' is neither a positive size nor a name")
    return TensorSpec(parts[0], tuple(dims), dtype)
