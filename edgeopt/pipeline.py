"""The pipeline: recipe → source artifact → variants → benchmarks → results.json and report.md.

Every stage output is cached under the hash of (input artifact, stage, version,
options, probe samples), so a re-run rebuilds nothing and a killed run resumes.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.accuracy import predict, score
from bench.isolated import SERVER_MIN_MS, Job, ServerSettings, run_isolated
from bench.latency import LatencySettings
from bench.report.html import render_html
from bench.report.markdown import render
from bench.results import Row, results_document, write_atomic, write_results
from bench.steadiness import Steadiness
from edgeopt import huggingface
from edgeopt import log as progress_log
from edgeopt.artifact import Artifact, TensorSpec
from edgeopt.context import StageContext, probe_fingerprint
from edgeopt.core.machine import fingerprint
from edgeopt.core.targets import Target, host_target, resolve
from edgeopt.data import Dataset, Split, load_npz
from edgeopt.errors import RecipeError, VerificationError
from edgeopt.image_folder import load_image_folder
from edgeopt.models import (
    BUILTIN_MODELS,
    LOAD_MODEL_VERSION,
    builtin_dataset,
    copy_onnx,
    file_sha256,
    load_factory,
    load_pickled,
    onnx_source_sha256,
    train_builtin,
)
from edgeopt.recipe import DataSource, LoadedRecipe
from edgeopt.stages import STAGES
from edgeopt.store import Store, stage_key
from edgeopt.text import TextSource, load_text
from exporter.verify import describe_failures
from runtimes import RUNTIMES, load, probe
from runtimes.base import SessionOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    output_dir: Path
    document: dict


def run(loaded: LoadedRecipe, output_dir: Path, verbose: bool = False, target: Target | None = None) -> RunResult:
    """Build every variant of the recipe, benchmark each on its runtimes, write the report.
    `target` overrides the recipe's."""
    started = time.perf_counter()
    recipe = loaded.recipe
    run_target = resolve(target or recipe.target)
    store = Store(output_dir)
    inputs = _input_specs(loaded)
    dataset = _dataset(loaded, inputs)
    probe_feeds = dataset.probe()
    total = 1 + len(loaded.order)

    probe_sha256 = probe_fingerprint(probe_feeds)
    calibration = _calibration(loaded, inputs, dataset)
    # choices such as an accuracy budget are checked on validation samples, so the
    # test split the report scores stays held out
    evaluation, evaluation_on = (dataset.validation, "validation") if dataset.validation else (dataset.test, "test")
    calibration_sha256 = probe_fingerprint(calibration.inputs) + probe_fingerprint(evaluation.inputs)
    root = _source(loaded, store, inputs, dataset, probe_feeds, probe_sha256, verbose, total)
    _say_target(target or recipe.target, run_target)
    artifacts: dict[str, Artifact] = {"model": root}
    unbuilt: dict[str, str] = {}  # variant → why it was not built on this machine
    benchmarked = recipe.bench.batch_sizes
    every_batch = [*benchmarked, recipe.bench.accuracy_batch_size, len(next(iter(probe_feeds.values())))]
    for position, name in enumerate(loaded.order, start=2):
        variant = recipe.variants[name]
        stage = STAGES[variant.stage]
        step = f"[{position}/{total}] {variant.stage}"
        reason = _why_not_built(stage)
        if reason:
            unbuilt[name] = reason
            log.info("%-24s %-14s %-8s %s", step, name, "skipped", reason)
            continue
        parent = artifacts[variant.from_]
        options = loaded.options[name]
        if stage.complete_options is not None:
            options = stage.complete_options(options, parent, benchmarked, every_batch)
        if "target" in type(options).model_fields:  # the resolved target is part of the key
            options = options.model_copy(update={"target": resolve(options.target, run_target)})
        samples = probe_sha256 + (calibration_sha256 if stage.calibrated else "")
        key = stage_key(parent.sha256, variant.stage, stage.version, options.model_dump(mode="json"), samples)
        modules = parent.facts.get("modules", {})
        context = StageContext(
            store.root,
            probe_feeds,
            verbose,
            calibration,
            evaluation,
            modules,
            evaluation_on,
            cache_dir=store.root,
            target=run_target,
        )
        make = functools.partial(_run_stage, stage, parent, options, context)
        artifact = _build_or_reuse(store, key, make, step, name, stage.stale)
        if artifact.verification is not None and not artifact.verification.passed:
            raise VerificationError(
                f"variants.{name}: {variant.stage} output differs from its reference: {describe_failures(artifact.verification)}"
            )
        artifacts[name] = artifact

    rows, skipped, scenarios, steadiness = _benchmark(loaded, artifacts, dataset)
    skipped = [{"variant": name, "runtime": None, "reason": reason} for name, reason in unbuilt.items()] + skipped
    document = results_document(
        recipe=recipe.name,
        recipe_path=str(loaded.path),
        machine=fingerprint(),
        artifacts=artifacts,
        rows=rows,
        skipped=skipped,
        scenarios=scenarios,
        steadiness=steadiness,
        max_accuracy_drop=recipe.bench.max_accuracy_drop,
        duration_s=time.perf_counter() - started,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_results(output_dir / "results.json", document)
    write_atomic(output_dir / "report.md", render(document))
    write_atomic(output_dir / "report.html", render_html(document))
    return RunResult(output_dir, document)


def _say_target(asked: Target, resolved: Target) -> None:
    if asked is Target.AUTO:
        log.info("target: auto → %s (this host: %s)", resolved, host_target()[1])
    else:
        log.info("target: %s", resolved)


def _input_specs(loaded: LoadedRecipe) -> tuple[TensorSpec, ...]:
    recipe = loaded.recipe
    if recipe.inputs is not None:
        return tuple(TensorSpec(i.name, tuple(i.shape), i.dtype) for i in recipe.inputs)
    if recipe.model.is_huggingface:
        return huggingface.input_specs(huggingface.check_directory(_huggingface_directory(loaded)))
    if recipe.model.builtin is not None:
        return BUILTIN_MODELS[recipe.model.builtin].inputs
    from exporter.onnx_facts import graph_io
    from exporter.onnx_io import load_checked

    return graph_io(load_checked(loaded.resolve(recipe.model.onnx), load_weights=False)).inputs


def _huggingface_directory(loaded: LoadedRecipe) -> Path:
    source = loaded.recipe.model
    if source.huggingface is not None:
        return loaded.resolve(source.huggingface)
    return huggingface.packaged_directory(source.builtin)


def _dataset(loaded: LoadedRecipe, inputs: tuple[TensorSpec, ...]) -> Dataset:
    data = loaded.recipe.data
    if data is None and loaded.recipe.model.is_huggingface:  # Python's documentation, the model's tokenizer
        return load_text(TextSource(), loaded.path.parent, inputs, _huggingface_directory(loaded))
    if data is None:
        return builtin_dataset(BUILTIN_MODELS[loaded.recipe.model.builtin].dataset)
    return _load_data(loaded, data, inputs, "data")


def _calibration(loaded: LoadedRecipe, inputs: tuple[TensorSpec, ...], dataset: Dataset) -> Split:
    """The recipe's calibration samples; else the dataset's train split, so the test split
    stays held out; else its test split."""
    source = loaded.recipe.calibration
    if source is None:
        return dataset.train or dataset.test
    calibration = _load_data(loaded, source, inputs, "calibration")
    return calibration.train or calibration.test


def _load_data(loaded: LoadedRecipe, data: DataSource, inputs: tuple[TensorSpec, ...], key: str) -> Dataset:
    if data.builtin is not None:
        dataset = builtin_dataset(data.builtin)
        expected = {spec.name for spec in inputs}
        if set(dataset.test.inputs) != expected:
            raise RecipeError(
                f"{loaded.path}: {key}.builtin '{data.builtin}' provides {', '.join(dataset.test.inputs)}, the model takes {', '.join(sorted(expected))}"
            )
        return dataset
    if data.npz is not None:
        return load_npz(loaded.resolve(data.npz), inputs)
    if data.text is not None:
        model_dir = _huggingface_directory(loaded) if loaded.recipe.model.is_huggingface else None
        return load_text(data.text, loaded.path.parent, inputs, model_dir)
    return load_image_folder(loaded.resolve(data.images), data.preprocess, inputs)


def _source(
    loaded: LoadedRecipe,
    store: Store,
    inputs,
    dataset: Dataset,
    probe_feeds,
    probe_sha256: str,
    verbose: bool,
    total: int,
) -> Artifact:
    """The root artifact: a trained built-in, a factory's module, or a copied ONNX file."""
    source = loaded.recipe.model
    if source.is_huggingface:
        directory = _huggingface_directory(loaded)
        options = {
            "huggingface": huggingface.directory_sha256(directory),
            "pooling": str(source.pooling),
        }

        def make(out_dir: Path) -> Artifact:
            return huggingface.load_huggingface(directory, source.pooling, StageContext(out_dir, probe_feeds, verbose))

        label = source.builtin or directory.name
    elif source.builtin is not None:
        spec = BUILTIN_MODELS[source.builtin]
        options = {"builtin": source.builtin, **spec.training}

        def make(out_dir: Path) -> Artifact:
            context = StageContext(out_dir, probe_feeds, verbose)
            with progress_log.progress(f"training {source.builtin}", spec.steps) as advance:
                return train_builtin(source.builtin, inputs, spec.outputs, dataset, context, on_epoch=advance)

        label = source.builtin
    elif source.factory is not None:
        weights = loaded.resolve(source.weights) if source.weights else None
        options = {
            "factory": source.factory,
            "kwargs": source.kwargs,
            "weights_sha256": file_sha256(weights) if weights else None,
            "inputs": [spec.__dict__ for spec in inputs],
            "outputs": loaded.recipe.outputs,
        }

        def make(out_dir: Path) -> Artifact:
            context = StageContext(out_dir, probe_feeds, verbose)
            return load_factory(
                source.factory, source.kwargs, weights, loaded.path.parent, inputs, loaded.recipe.outputs, context
            )

        label = source.factory
    elif source.pickled is not None:
        pickled = loaded.resolve(source.pickled)
        options = {
            "pickled_sha256": file_sha256(pickled),
            "inputs": [spec.__dict__ for spec in inputs],
            "outputs": loaded.recipe.outputs,
        }

        def make(out_dir: Path) -> Artifact:
            return load_pickled(pickled, inputs, loaded.recipe.outputs, StageContext(out_dir, probe_feeds, verbose))

        label = pickled.name
    else:
        path = loaded.resolve(source.onnx)
        options = {"onnx_sha256": onnx_source_sha256(path)}

        def make(out_dir: Path) -> Artifact:
            return copy_onnx(path, StageContext(out_dir, probe_feeds, verbose))

        label = path.name
    key = stage_key(None, "load_model", LOAD_MODEL_VERSION, options, probe_sha256)
    return _build_or_reuse(store, key, make, f"[1/{total}] load_model", label)


def _run_stage(stage, parent: Artifact, options, context: StageContext, out_dir: Path) -> Artifact:
    return stage.function(parent, options, dataclasses.replace(context, out_dir=out_dir))


def _why_not_built(stage) -> str | None:
    """Engines are the last step of a chain (no stage takes one), so a variant not built
    leaves no orphans behind."""
    if stage.requires is not None:
        availability = probe(stage.requires)
        if not availability.ok:
            return f"not built: {stage.requires}: {availability.reason}"
    return None


def _build_or_reuse(store: Store, key: str, make, step: str, label: str, stale=None) -> Artifact:
    """The cached artifact under `key`, or a new one; logs the stage's one line either way.
    `stale(artifact)` says why a cached one cannot serve on this machine (it is rebuilt)."""
    began = time.perf_counter()
    artifact = store.get(key)
    if artifact is not None and stale is not None:
        reason = stale(artifact)
        if reason:
            log.warning("%s: %s: rebuilding it from its source", label, reason)
            artifact = None
    took = "cached"
    if artifact is None:
        artifact = store.build(key, make)
        took = f"{time.perf_counter() - began:.1f} s"
    figures = [f"{artifact.facts.get('size_bytes', 0) / 1e6:.2f} MB"]
    if artifact.verification is not None:
        worst = artifact.verification.worst()
        verdict = "verified" if artifact.verification.passed else "FAILED"
        figures.append(f"{verdict} max_abs {worst.max_abs:.2g} cosine {worst.cosine_min:.6f}")
    log.info("%-24s %-14s %-8s %s", step, label, took, "  ".join(figures))
    return artifact


def _benchmark(
    loaded: LoadedRecipe, artifacts: dict[str, Artifact], dataset: Dataset
) -> tuple[list[Row], list[dict], list[dict], Steadiness | None]:
    """Every artifact on every runtime of the recipe that runs its format, measured in the
    order the recipe lists them (the accuracy reference, `model`, first)."""
    settings = loaded.recipe.bench
    plan, skipped, warned = [], [], set()
    for name in ["model", *loaded.recipe.variants]:
        artifact = artifacts.get(name)
        if artifact is None:  # not built on this machine
            continue
        for runtime_id in loaded.recipe.runtimes:
            if RUNTIMES[runtime_id].format != artifact.format:
                continue
            refused = artifact.facts.get("not_for", {}).get(runtime_id)
            if refused:
                skipped.append({"variant": name, "runtime": runtime_id, "reason": refused})
                continue
            availability = probe(runtime_id)
            if not availability.ok:
                skipped.append({"variant": name, "runtime": runtime_id, "reason": availability.reason})
                if runtime_id not in warned:
                    log.warning("not measured on %s: %s", runtime_id, availability.reason)
                    warned.add(runtime_id)
                continue
            plan.append((name, runtime_id))
    rows, scenarios, steadiness = _measure(plan, artifacts, dataset, settings, skipped)
    rows.sort(key=lambda r: (r.batch, r.threads, list(artifacts).index(r.variant), r.runtime))
    return rows, skipped, scenarios, steadiness


def _measure(plan, artifacts: dict[str, Artifact], dataset: Dataset, settings, skipped: list[dict]):
    """Accuracy here, once per artifact × runtime; latency in isolated worker processes."""
    import tempfile

    import numpy as np

    jobs = []
    for name, runtime_id in plan:
        fixed = artifacts[name].io.inputs[0].shape[0]
        batches = tuple(b for b in settings.batch_sizes if not isinstance(fixed, int) or b == fixed)
        for batch in sorted(set(settings.batch_sizes) - set(batches)):
            reason = f"batch {batch}: the model's batch dim is fixed at {fixed}"
            skipped.append({"variant": name, "runtime": runtime_id, "reason": reason})
        # a GPU runtime's speed does not follow the CPU thread count: one setting is enough
        thread_counts = settings.threads if RUNTIMES[runtime_id].device == "cpu" else [max(settings.threads)]
        jobs += [Job(name, runtime_id, threads, artifacts[name].directory, batches) for threads in thread_counts]
    accuracy = _accuracy(plan, artifacts, dataset, settings)
    latency = LatencySettings(settings.warmup_runs, settings.min_runs, settings.min_duration_s)
    server = ServerSettings(**settings.server.model_dump()) if settings.server else None
    log.info("bench: %d isolated processes × %d interleaved rounds", len(jobs), settings.rounds)
    with tempfile.TemporaryDirectory(prefix="edgeopt-bench-") as scratch:
        feeds = Path(scratch) / "feeds.npz"
        np.savez(feeds, **{f"b{b}__{k}": v for b in settings.batch_sizes for k, v in _batch(dataset.test, b).items()})
        batches = len(set(settings.batch_sizes))
        with progress_log.progress("benchmarking", batches * settings.rounds) as advance:
            benchmark = run_isolated(
                jobs, feeds, latency, settings.rounds, settings.harness_overhead, server, on_done=advance
            )
    measured, served = benchmark.measured, benchmark.served
    rows = [
        Row(
            variant=job.variant,
            runtime=job.runtime,
            precision="fp16" if RUNTIMES[job.runtime].half else str(artifacts[job.variant].precision),
            batch=batch,
            threads=job.threads,
            load_s=m.load_s,
            latency=m.latency,
            accuracy=accuracy[(job.variant, job.runtime)],
            round_p50_ms=m.round_p50_ms,
            spread=m.spread,
            stable=m.spread <= settings.stability_threshold,
            baseline_rss_mb=m.baseline_rss_mb,
            peak_rss_mb=m.peak_rss_mb,
            warmup_runs=m.warmup_runs,
            harness_overhead=m.harness_overhead,
            device_latency=m.device_latency,
        )
        for (job, batch), m in measured.items()
    ]
    for job in jobs:
        if server and 1 in job.batches and job not in served:
            reason = f"server scenario, {job.threads} threads: batch-1 latency under {SERVER_MIN_MS} ms, too short to tell the model from the request dispatch"
            skipped.append({"variant": job.variant, "runtime": job.runtime, "reason": reason})
    scenarios = [
        {
            "scenario": "server",
            "variant": job.variant,
            "runtime": job.runtime,
            "threads": job.threads,
            "load": server.load,
            "concurrency": server.concurrency,
            "rate_per_s": s.rate_per_s,
            "requests": s.latency.runs,
            "p50_ms": s.latency.p50_ms,
            "p90_ms": s.latency.p90_ms,
            "p99_ms": s.latency.p99_ms,
        }
        for job, s in served.items()
    ]
    return rows, scenarios, benchmark.steadiness


def _accuracy(plan, artifacts: dict[str, Artifact], dataset: Dataset, settings) -> dict:
    """Each artifact × runtime on the whole test split; agreement against the first one."""
    results = {}
    reference = None
    for name, runtime_id in plan:
        artifact = artifacts[name]
        with load(runtime_id, artifact, SessionOptions(threads=max(settings.threads))) as session:
            outputs = predict(session, dataset.test, _eval_batch(artifact, settings.accuracy_batch_size))
        if reference is None:
            reference = outputs
        results[(name, runtime_id)] = score(outputs, dataset.test.labels, reference, dataset.test.queries)
    return results


def _eval_batch(artifact: Artifact, preferred: int) -> int:
    fixed = artifact.io.inputs[0].shape[0]
    return fixed if isinstance(fixed, int) else preferred


def _batch(split: Split, size: int) -> dict:
    """The first `size` held-out samples, repeated if the split is smaller."""
    import numpy as np

    index = np.arange(size) % len(split)
    return {name: np.ascontiguousarray(array[index]) for name, array in split.inputs.items()}
