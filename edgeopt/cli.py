"""The `edgeopt` command line: each verb's handler. Exit codes: 0 success, 2 bad input,
1 a bug, 130 interrupted. The arguments are declared in edgeopt.arguments."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from edgeopt.arguments import parse_input, parser
from edgeopt.core.errors import BenchmarkError, EdgeoptError, RecipeError, RuntimeUnavailable
from edgeopt.core.targets import Target

log = logging.getLogger("edgeopt")

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class DeviceUnusable(BenchmarkError):
    """A device that was checked cannot measure."""


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = parser().parse_args(argv)
        from edgeopt.log import NORMAL, QUIET, VERBOSE, configure

        configure(QUIET if args.quiet else VERBOSE if args.verbose else NORMAL)
        verbs = {
            "run": _run,
            "export": _export,
            "simplify": _simplify,
            "fp16": _fp16,
            "bf16": _bf16,
            "quantize": _quantize,
            "build": _build,
            "bench": _bench,
            "compare": _compare,
            "report": _report,
            "devices": _devices,
            "recipe": _recipe,
            "doctor": _doctor,
        }
        if args.verb not in ("compare", "report", "recipe", "doctor"):
            _require_onnxruntime()
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


def _require_onnxruntime() -> None:
    """onnxruntime comes from one of two extras (cpu, gpu), never both: say so in one line
    rather than fail deep inside a stage."""
    from runtimes.ort_providers import problem_here

    problem = problem_here()
    if problem:
        raise RuntimeUnavailable(problem)


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
    devices = None
    if args.devices or args.devices_file:
        from edgeopt.devices import defined_devices, select

        devices = select(args.devices or ["local"], defined_devices(loaded, args.devices_file))
    target = args.target and Target(args.target)
    result = run(loaded, output, verbose=args.verbose, target=target, devices=devices, ray=args.ray)
    console.run_rows(result.document["rows"])
    failed = [d for d in result.document["devices"] if d["status"] not in ("ok", "retried")]
    for device in failed:
        print(f"device {device['name']}: not measured ({device['status']}): {device['faults'][-1]}")
    console.run_trust(result.document["summary"])
    console.recommendation(result.document)
    print(f"report: {output / 'report.md'} and {output / 'report.html'}")
    if len(failed) == len(result.document["devices"]):  # recorded, and still no device measured anything
        raise DeviceUnusable("; ".join(d["faults"][-1] for d in failed))
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

    options = {"simplifier": args.simplifier, "keep_initializers_as_inputs": args.keep_initializers_as_inputs}
    console.transform(transform_command("simplify", args.model, args.output, options, args.probe), args.output)
    return EXIT_OK


def _bf16(args) -> int:
    from edgeopt import console
    from edgeopt.commands import transform_command

    options = {"keep_initializers_as_inputs": args.keep_initializers_as_inputs}
    console.transform(transform_command("convert_bf16", args.model, args.output, options, args.probe), args.output)
    return EXIT_OK


def _fp16(args) -> int:
    from edgeopt import console
    from edgeopt.commands import transform_command

    options = {
        "keep_io_types": not args.fp16_io,
        "keep_ops": args.keep_op,
        "keep_initializers_as_inputs": args.keep_initializers_as_inputs,
    }
    console.transform(transform_command("convert_fp16", args.model, args.output, options, args.probe), args.output)
    return EXIT_OK


def _quantize(args) -> int:
    from edgeopt import console
    from edgeopt.commands import transform_command

    common = {"target": args.target, "keep_initializers_as_inputs": args.keep_initializers_as_inputs}
    if args.dynamic:
        artifact = transform_command("quantize_dynamic", args.model, args.output, common, None)
    else:
        if args.calibration is None:
            raise RecipeError("quantize: static INT8 needs --calibration DATA.npz or an image folder (or --dynamic)")
        options = {**common, "method": args.method, "percentile": args.percentile, "samples": args.samples}
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
    if args.device and args.device != "local":
        from edgeopt.devices import defined_devices, select
        from edgeopt.remote_bench import bench_on_device

        device = select([args.device], defined_devices(None, args.devices_file))[0]
        rows = bench_on_device(device, args.artifacts, runtimes, batches, threads, dims, args.min_duration)
        console.bench_rows(rows, device.name)
        return EXIT_OK
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


def _devices(args) -> int:
    from edgeopt.devices import check, defined_devices, select

    if args.devices_file is None:
        raise RecipeError("devices check: give --devices FILE, a YAML file with devices: (a recipe works too)")
    defined = defined_devices(None, args.devices_file)
    devices = select(args.names or [name for name in defined if name != "local"], defined)
    problems = []
    for device in devices:
        lines, problem = check(device)
        print("\n".join(lines), flush=True)
        if problem:
            problems.append(problem)
    if problems:
        raise DeviceUnusable("; ".join(problems))
    return EXIT_OK


def _report(args) -> int:
    from bench.report.summary import load_summary_run
    from edgeopt import console

    document = load_summary_run(args.run)
    console.recommendation(document)
    folder = args.run if args.run.is_dir() else args.run.parent
    for name in ("report.html", "report.md"):
        if (folder / name).is_file():
            print(f"report: {folder / name}")
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
