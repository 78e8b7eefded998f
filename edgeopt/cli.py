"""The `edgeopt` command line. Exit codes: 0 success, 2 bad input, 1 a bug, 130 interrupted.

A verb's options that are also a stage's take their choices, defaults and help from the
stage's option model, so each default lives in one place.
"""

from __future__ import annotations

import argparse
import enum
import logging
import os
import re
import sys
import time
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from edgeopt import __version__
from edgeopt.core.errors import EdgeoptError, RecipeError
from edgeopt.core.targets import Target

log = logging.getLogger("edgeopt")

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
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


def _parser() -> argparse.ArgumentParser:
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


def _transform_parsers(verbs) -> None:
    """The single-step verbs that make an artifact: export, simplify, fp16, quantize, build."""
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

    simplify = _model_verb(verbs, "simplify", "simplify an ONNX model, verified against it")
    _option(simplify, "--simplifier", SimplifyOptions, "simplifier")
    simplify.add_argument("--probe", type=Path, metavar="DATA.npz", help=PROBE_HELP)

    fp16 = _model_verb(verbs, "fp16", "convert an ONNX model to FP16, verified against it")
    fp16.add_argument("--fp16-io", action="store_true", help="make inputs and outputs FP16 too (default: FP32)")
    keep_help = ConvertFp16Options.model_fields["keep_ops"].description + " (repeat)"
    fp16.add_argument("--keep-op", action="append", default=[], metavar="OP", help=keep_help)
    fp16.add_argument("--probe", type=Path, metavar="DATA.npz", help=PROBE_HELP)

    quantize = _model_verb(verbs, "quantize", "quantize an ONNX model to INT8, calibrated on real samples")
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


def _model_verb(verbs, name: str, help_text: str):
    """A verb reading IN.onnx and writing -o OUT."""
    verb = verbs.add_parser(name, help=help_text)
    verb.add_argument("model", type=Path, metavar="IN.onnx")
    verb.add_argument("-o", "--output", type=Path, required=True)
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

    compare = verbs.add_parser("compare", help="what got faster or slower beyond noise between two runs")
    compare.add_argument("before", type=Path, metavar="RUN_A")
    compare.add_argument("after", type=Path, metavar="RUN_B")
    threshold_help = "smallest p50 change reported, as a fraction (default 0.02)"
    compare.add_argument("--threshold", type=float, default=0.02, help=threshold_help)


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = _parser().parse_args(argv)
        from edgeopt.log import NORMAL, QUIET, VERBOSE, configure

        configure(QUIET if args.quiet else VERBOSE if args.verbose else NORMAL)
        verbs = {
            "run": _run,
            "export": _export,
            "simplify": _simplify,
            "fp16": _fp16,
            "quantize": _quantize,
            "build": _build,
            "bench": _bench,
            "compare": _compare,
            "recipe": _recipe,
            "doctor": _doctor,
        }
        return verbs[args.verb](args)
    except EdgeoptError as err:
        if args is not None and args.debug:
            import traceback

            traceback.print_exception(err, file=sys.stderr)
        print(f"edgeopt: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(
            "edgeopt: interrupted; finished artifacts are kept, run the same command again to resume", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (`edgeopt recipe --schema | head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's advice: no error at exit
        return EXIT_OK


def _run(args) -> int:
    from edgeopt import console
    from edgeopt.pipeline import run
    from edgeopt.recipe import check_ray_address, load_recipe

    started = time.perf_counter()
    if args.ray is not None:
        try:
            check_ray_address(args.ray)
        except ValueError as err:
            raise RecipeError(f"--ray {args.ray!r}: {err}") from None
    loaded = load_recipe(args.recipe)
    output = args.output or (
        loaded.resolve(loaded.recipe.output) if loaded.recipe.output else Path("runs") / loaded.recipe.name
    )
    result = run(loaded, output, verbose=args.verbose, target=args.target and Target(args.target), ray=args.ray)
    console.run_rows(result.document["rows"])
    console.run_trust(result.document["summary"])
    print(f"report: {output / 'report.md'} and {output / 'report.html'}")
    print(f"results: {output / 'results.json'}")
    if result.failed:
        return _failed_variants(result.failed, time.perf_counter() - started)
    log.info("PASSED in %.1f s", time.perf_counter() - started)
    return EXIT_OK


def _failed_variants(failed: dict, seconds: float) -> int:
    """A Ray run went on past failed builds: it ends failed, in one line naming each
    (a bug's remote traceback first), after the report of the rest is written."""
    for failure in failed.values():
        if failure.traceback:
            print(failure.traceback, file=sys.stderr)
    log.error("FAILED in %.1f s", seconds)
    listed = "; ".join(f"variants.{name}: {failure.line}" for name, failure in failed.items())
    print(
        f"edgeopt: error: {len(failed)} variant(s) failed to build (the report covers the rest): {listed}",
        file=sys.stderr,
    )
    return EXIT_BAD_INPUT if all(failure.input for failure in failed.values()) else EXIT_BUG


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


def _export(args) -> int:
    from edgeopt.commands import export_command

    inputs = tuple(parse_input(text) for text in args.input)
    artifact = export_command(args.model, args.output, inputs, args.weights, args.opset, args.exporter)
    worst = artifact.verification.worst()
    print(f"{args.output}: verified against PyTorch, max abs {worst.max_abs:.2g}, min cosine {worst.cosine_min:.6f}")
    return EXIT_OK


def _simplify(args) -> int:
    from edgeopt import console
    from edgeopt.commands import transform_command

    options = {"simplifier": args.simplifier}
    console.transform(transform_command("simplify", args.model, args.output, options, args.probe), args.output)
    return EXIT_OK


def _fp16(args) -> int:
    from edgeopt import console
    from edgeopt.commands import transform_command

    options = {"keep_io_types": not args.fp16_io, "keep_ops": args.keep_op}
    console.transform(transform_command("convert_fp16", args.model, args.output, options, args.probe), args.output)
    return EXIT_OK


def _quantize(args) -> int:
    from edgeopt import console
    from edgeopt.commands import transform_command

    if args.dynamic:
        artifact = transform_command("quantize_dynamic", args.model, args.output, {"target": args.target}, None)
    else:
        if args.calibration is None:
            raise RecipeError("quantize: static INT8 needs --calibration DATA.npz or an image folder (or --dynamic)")
        options = {"method": args.method, "percentile": args.percentile, "target": args.target, "samples": args.samples}
        artifact = transform_command("quantize_int8", args.model, args.output, options, None, args.calibration)
    console.transform(artifact, args.output, auto_target=args.target == Target.AUTO)
    return EXIT_OK


def _build(args) -> int:
    from edgeopt import console
    from edgeopt.commands import build_command

    dims = {}
    for text in args.dim:
        name, _, sizes = text.partition("=")
        parts = sizes.split(":")
        if not name or len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise RecipeError(f"--dim '{text}' is not NAME=MIN:OPT:MAX (e.g. batch=1:8:32)")
        dims[name] = dict(zip(("min", "opt", "max"), map(int, parts), strict=True))
    options = {"precision": "fp16" if args.fp16 else "source", "dims": dims, "workspace_mb": args.workspace_mb}
    console.engine(build_command(args.model, args.output, options, args.probe), args.output)
    return EXIT_OK


def _bench(args) -> int:
    from edgeopt import console
    from edgeopt.commands import bench_command

    dims = {}
    for text in args.dim:
        name, _, size = text.partition("=")
        if not size.isdigit() or int(size) < 1:
            raise RecipeError(f"--dim '{text}' is not NAME=SIZE with a positive size")
        dims[name] = int(size)
    runtimes, batches, threads = args.runtimes or ["ort-cpu"], args.batches or [1], args.threads or [1]
    console.bench_rows(bench_command(args.artifacts, runtimes, batches, threads, dims, args.min_duration))
    return EXIT_OK


def _compare(args) -> int:
    from bench.compare import compare, load_run
    from edgeopt import console

    result = compare(load_run(args.before), load_run(args.after), args.threshold)
    if not result.same_machine:
        log.warning("the runs are from different machines or library versions: differences are not only the code's")
    console.comparison(result, args.before, args.after, args.threshold)
    return EXIT_OK


def _recipe(args) -> int:
    import json

    from edgeopt.recipe import schema

    print(json.dumps(schema(), indent=2))
    return EXIT_OK


def _doctor(args) -> int:
    from edgeopt.doctor import report

    print("\n".join(report()))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
