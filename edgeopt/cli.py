"""The `edgeopt` command line. Exit codes: 0 success, 2 bad input, 1 a bug, 130 interrupted."""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

from edgeopt import __version__
from edgeopt.core.targets import Target
from edgeopt.errors import EdgeoptError, RecipeError

log = logging.getLogger("edgeopt")

TARGETS = tuple(str(target) for target in Target)

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors get our one line and exit 2."""

    def error(self, message: str):
        raise RecipeError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgeopt", description="Prepare trained models for their deployment targets.")
    parser.add_argument("--version", action="version", version=f"edgeopt {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and results only")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logs, including the libraries'")
    parser.add_argument("--debug", action="store_true", help="show the traceback behind an error")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    run = verbs.add_parser("run", help="run a recipe: build, verify, benchmark, report")
    run.add_argument("recipe", type=Path)
    run.add_argument("--output", type=Path, help="run directory (default: the recipe's output, or runs/<name>)")
    run.add_argument(
        "--target", choices=TARGETS, help="the machine the models will run on (default: the recipe's target, else auto)"
    )

    export = verbs.add_parser("export", help="export a PyTorch model to a verified ONNX file")
    export.add_argument("model", help="a built-in model name or package.module:function")
    export.add_argument("-o", "--output", type=Path, required=True)
    export.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME:SHAPE:DTYPE",
        help="e.g. image:batch,3,224,224:float32 (repeat per input)",
    )
    export.add_argument("--weights", type=Path, help="state dict for a factory model")
    export.add_argument("--opset", type=int, default=18)
    export.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo")

    simplify = verbs.add_parser("simplify", help="simplify an ONNX model, verified against it")
    simplify.add_argument("model", type=Path, metavar="IN.onnx")
    simplify.add_argument("-o", "--output", type=Path, required=True)
    simplify.add_argument("--simplifier", choices=("onnxslim", "onnxsim"), default="onnxslim")
    simplify.add_argument(
        "--probe", type=Path, metavar="DATA.npz", help="real samples to verify on (default: seeded random)"
    )

    fp16 = verbs.add_parser("fp16", help="convert an ONNX model to FP16, verified against it")
    fp16.add_argument("model", type=Path, metavar="IN.onnx")
    fp16.add_argument("-o", "--output", type=Path, required=True)
    fp16.add_argument(
        "--fp16-io", action="store_true", help="make inputs and outputs FP16 too (default: keep them FP32)"
    )
    fp16.add_argument(
        "--keep-op", action="append", default=[], metavar="OP", help="an op type to keep in FP32 (repeat)"
    )
    fp16.add_argument(
        "--probe", type=Path, metavar="DATA.npz", help="real samples to verify on (default: seeded random)"
    )

    quantize = verbs.add_parser("quantize", help="quantize an ONNX model to INT8, calibrated on real samples")
    quantize.add_argument("model", type=Path, metavar="IN.onnx")
    quantize.add_argument(
        "--calibration",
        type=Path,
        metavar="DATA.npz|DIR",
        help="an .npz (one array per input, samples first) or a folder of images (ImageNet-style preprocessing)",
    )
    quantize.add_argument("-o", "--output", type=Path, required=True)
    quantize.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax")
    quantize.add_argument("--percentile", type=float, default=99.999)
    quantize.add_argument(
        "--target", choices=TARGETS, default="auto", help="the machine the INT8 model runs on (auto: this host)"
    )
    quantize.add_argument("--samples", type=int, default=256, help="calibration samples drawn (seeded)")
    quantize.add_argument("--dynamic", action="store_true", help="dynamic INT8: weights only, no calibration")

    build = verbs.add_parser("build", help="build a TensorRT engine from an ONNX model, verified against it")
    build.add_argument("model", type=Path, metavar="IN.onnx")
    build.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.engine")
    build.add_argument(
        "--fp16", action="store_true", help="FP16 kernels over an FP32 model (TensorRT 10; on 11 build an fp16 model)"
    )
    build.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=MIN:OPT:MAX",
        help="a symbolic dim's range (default for the batch dim: 1:1:32)",
    )
    build.add_argument("--workspace-mb", type=int, default=4096)
    build.add_argument(
        "--probe", type=Path, metavar="DATA.npz", help="real samples to verify on (default: seeded random)"
    )

    bench = verbs.add_parser("bench", help="time ONNX files or engines on a runtime with random inputs")
    bench.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT")
    bench.add_argument("--runtime", action="append", dest="runtimes", metavar="ID")
    bench.add_argument("--batch", action="append", dest="batches", type=int, metavar="N")
    bench.add_argument("--threads", action="append", dest="threads", type=int, metavar="N")
    bench.add_argument(
        "--dim", action="append", default=[], metavar="NAME=SIZE", help="size of a symbolic dim other than the batch"
    )
    bench.add_argument("--min-duration", type=float, default=1.0, metavar="SECONDS")

    compare = verbs.add_parser("compare", help="what got faster or slower beyond noise between two runs")
    compare.add_argument("before", type=Path, metavar="RUN_A")
    compare.add_argument("after", type=Path, metavar="RUN_B")
    compare.add_argument(
        "--threshold", type=float, default=0.02, help="smallest p50 change reported, as a fraction (default 0.02)"
    )

    verbs.add_parser("doctor", help="what this machine can run, and why not")
    return parser


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


def _run(args) -> int:
    from edgeopt.pipeline import run
    from edgeopt.recipe import load_recipe

    started = time.perf_counter()
    loaded = load_recipe(args.recipe)
    output = args.output or (
        loaded.resolve(loaded.recipe.output) if loaded.recipe.output else Path("runs") / loaded.recipe.name
    )
    result = run(loaded, output, verbose=args.verbose, target=args.target and Target(args.target))
    _print_rows(result.document["rows"])
    _print_trust(result.document["summary"])
    print(f"report: {output / 'report.md'} and {output / 'report.html'}")
    print(f"results: {output / 'results.json'}")
    log.info("PASSED in %.1f s", time.perf_counter() - started)
    return EXIT_OK


def _print_rows(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    from bench.report.accuracy_columns import accuracy_cells, accuracy_columns

    table = Table(title="latency (ms per call) and accuracy", title_justify="left")
    accuracy = accuracy_columns(rows)[:1] if accuracy_columns(rows)[0] == "top-1" else accuracy_columns(rows)
    for column in ("variant", "runtime", "batch", "threads", "p50", "p90", "p99", "items/s", "speedup", *accuracy):
        table.add_column(column, justify="left" if column in ("variant", "runtime") else "right")
    for row in rows:
        latency = row["latency"]
        table.add_row(
            row["variant"],
            row["runtime"],
            str(row["batch"]),
            str(row["threads"]),
            f"{latency['p50_ms']:.3f}",
            f"{latency['p90_ms']:.3f}",
            f"{latency['p99_ms']:.3f}",
            f"{latency['throughput_per_s']:.0f}",
            "—" if row["speedup_vs_model"] is None else f"{row['speedup_vs_model']:.2f}×",
            *accuracy_cells(row, accuracy),
        )
    Console(width=120).print(table)


def _print_trust(summary: dict) -> None:
    if not summary["measurements"]:
        return
    print(
        f"spread of the median between even and odd interleaved rounds: {100 * summary['median_spread']:.1f}% typical, "
        f"{100 * summary['max_spread']:.1f}% at most; unstable measurements: {len(summary['unstable'])}"
    )
    if summary["max_twice_difference"] is not None:
        print(
            f"same artifact measured twice: medians differ by {100 * summary['max_twice_difference']:.1f}% at most "
            "(bar: 3%)"
        )
    if summary.get("harness_overhead_fastest") is not None:
        print(
            f"harness overhead: {summary['harness_overhead_fastest']:.4f}× a bare loop's median on the fastest call "
            f"({summary['harness_overhead_fastest_at']}; bar: 1.02), {summary['median_harness_overhead']:.4f}× typical"
        )
    steadiness = summary.get("machine_steadiness")
    if steadiness is not None:
        print(
            f"the machine itself: a fixed workload ran {100 * steadiness['variation']:.0f}% slower in its slow spells "
            f"than in its fast ones, its even and odd rounds {100 * steadiness['spread']:.1f}% apart"
        )


def parse_input(text: str):
    """NAME:SHAPE:DTYPE, e.g. image:batch,3,224,224:float32."""
    from edgeopt.artifact import TensorSpec
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
    from edgeopt.commands import transform_command

    options = {"simplifier": args.simplifier}
    return _report_transform(transform_command("simplify", args.model, args.output, options, args.probe), args.output)


def _fp16(args) -> int:
    from edgeopt.commands import transform_command

    options = {"keep_io_types": not args.fp16_io, "keep_ops": args.keep_op}
    return _report_transform(
        transform_command("convert_fp16", args.model, args.output, options, args.probe), args.output
    )


def _quantize(args) -> int:
    from edgeopt.commands import transform_command

    if args.dynamic:
        artifact = transform_command("quantize_dynamic", args.model, args.output, {"target": args.target}, None)
    else:
        if args.calibration is None:
            raise RecipeError("quantize: static INT8 needs --calibration DATA.npz or an image folder (or --dynamic)")
        options = {"method": args.method, "percentile": args.percentile, "target": args.target, "samples": args.samples}
        artifact = transform_command("quantize_int8", args.model, args.output, options, None, args.calibration)
    return _report_transform(artifact, args.output, auto_target=args.target == Target.AUTO)


def _report_transform(artifact, output: Path, auto_target: bool = False) -> int:
    worst = artifact.verification.worst()
    before = artifact.facts["before"]
    built_for = f"built for {artifact.target}{' (auto: this host)' if auto_target else ''}; " if artifact.target else ""
    print(
        f"{output}: {built_for}{before['node_count']} → {artifact.facts['node_count']} nodes, "
        f"{before['size_bytes'] / 1e6:.2f} → {artifact.facts['size_bytes'] / 1e6:.2f} MB; "
        f"verified against the input: max abs {worst.max_abs:.2g}, min cosine {worst.cosine_min:.6f}"
    )
    return EXIT_OK


def _build(args) -> int:
    from edgeopt.commands import build_command

    dims = {}
    for text in args.dim:
        name, _, sizes = text.partition("=")
        parts = sizes.split(":")
        if not name or len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise RecipeError(f"--dim '{text}' is not NAME=MIN:OPT:MAX (e.g. batch=1:8:32)")
        dims[name] = dict(zip(("min", "opt", "max"), map(int, parts), strict=True))
    options = {"precision": "fp16" if args.fp16 else "source", "dims": dims, "workspace_mb": args.workspace_mb}
    artifact = build_command(args.model, args.output, options, args.probe)
    worst = artifact.verification.worst()
    engine = artifact.facts["engine"]
    print(
        f"{args.output}: {artifact.precision} engine for {engine['gpu']} with TensorRT {engine['tensorrt_version']}, "
        f"{artifact.facts['size_bytes'] / 1e6:.2f} MB; verified against the input: max abs {worst.max_abs:.2g}, "
        f"min cosine {worst.cosine_min:.6f}"
    )
    return EXIT_OK


def _bench(args) -> int:
    from edgeopt.commands import bench_command

    dims = {}
    for text in args.dim:
        name, _, size = text.partition("=")
        if not size.isdigit() or int(size) < 1:
            raise RecipeError(f"--dim '{text}' is not NAME=SIZE with a positive size")
        dims[name] = int(size)
    rows = bench_command(
        args.artifacts, args.runtimes or ["ort-cpu"], args.batches or [1], args.threads or [1], dims, args.min_duration
    )
    from rich.console import Console
    from rich.table import Table

    table = Table(title="latency (ms per call), random inputs", title_justify="left")
    for column in ("artifact", "runtime", "batch", "threads", "p50", "p90", "p99", "mean", "runs", "items/s"):
        table.add_column(column, justify="left" if column in ("artifact", "runtime") else "right")
    for artifact, runtime_id, threads, stats in rows:
        table.add_row(
            artifact,
            runtime_id,
            str(stats.batch),
            str(threads),
            f"{stats.p50_ms:.3f}",
            f"{stats.p90_ms:.3f}",
            f"{stats.p99_ms:.3f}",
            f"{stats.mean_ms:.3f}",
            str(stats.runs),
            f"{stats.throughput_per_s:.0f}",
        )
    Console(width=120).print(table)
    return EXIT_OK


def _compare(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from bench.compare import compare, load_run

    result = compare(load_run(args.before), load_run(args.after), args.threshold)
    if not result.same_machine:
        log.warning("the runs are from different machines or library versions: differences are not only the code's")
    table = Table(title=f"p50 latency, {args.before} → {args.after}", title_justify="left")
    for column in ("variant", "runtime", "batch", "threads", "before ms", "after ms", "ratio", "verdict"):
        table.add_column(column, justify="left" if column in ("variant", "runtime", "verdict") else "right")
    for change in result.changes:
        variant, runtime, batch, threads = change.key
        table.add_row(
            variant,
            runtime,
            str(batch),
            str(threads),
            f"{change.before_ms:.3f}",
            f"{change.after_ms:.3f}",
            f"{change.ratio:.3f}×",
            change.verdict,
        )
    Console(width=120).print(table)
    counts = {verdict: sum(c.verdict == verdict for c in result.changes) for verdict in ("faster", "slower")}
    print(
        f"{counts['faster']} faster, {counts['slower']} slower, "
        f"{len(result.changes) - sum(counts.values())} within noise (95% CI of the median, threshold {args.threshold:.0%})"
    )
    for label, keys in (("only in", result.only_before), ("new in", result.only_after)):
        for key in keys:
            print(f"{label} {args.before if label == 'only in' else args.after}: {' '.join(map(str, key))}")
    return EXIT_OK


def _doctor(args) -> int:
    from edgeopt.doctor import report

    print("\n".join(report()))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
