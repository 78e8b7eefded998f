"""The variant graph: each variant is its stage run on its parent, under a content-addressed
key (parent sha256, stage, version, options with the run's defaults filled in, samples),
built in the store or reused from it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from edgeopt.core.artifact import Artifact
from edgeopt.core.context import StageContext
from edgeopt.core.errors import VerificationError
from edgeopt.core.numeric import describe_failures
from edgeopt.core.targets import Target, host_target, resolve
from edgeopt.executor import TaskFailure
from edgeopt.recipe import LoadedRecipe
from edgeopt.sources import LOAD_MODEL_VERSION, RootBuild, RunData, root_build
from edgeopt.stages import STAGES, Stage
from edgeopt.store import Store, stage_key
from runtimes import probe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Build:
    """One variant's stage run: the stage, its parent, its completed options and its key."""

    name: str
    stage: Stage
    parent: Artifact
    options: BaseModel
    key: str


@dataclass(frozen=True)
class Built:
    artifacts: dict[str, Artifact]  # "model" (the source) first, then each variant built
    unbuilt: dict[str, str]  # variant → why it was not built on this machine
    # variant → how its build failed (Ray runs go on past a failed build; a local run stops)
    failed: dict[str, TaskFailure] = field(default_factory=dict)


def build_all(
    loaded: LoadedRecipe, store: Store, data: RunData, asked: Target, verbose: bool, reason: str | None = None
) -> Built:
    """The root artifact, then every variant in an order where parents come first, each
    built for the run's target (`asked`: a device's, or `auto`, this host; `reason` says why)."""
    total = 1 + len(loaded.order)
    root = build_root(loaded, store, data, total)
    target = run_target(asked, reason)
    artifacts, unbuilt = {"model": root}, {}
    for position, name in enumerate(loaded.order, start=2):
        step = f"[{position}/{total}] {loaded.recipe.variants[name].stage}"
        build = prepare(loaded, name, artifacts[loaded.recipe.variants[name].from_], data, target)
        if isinstance(build, str):
            unbuilt[name] = build
            log.info("%-24s %-14s %-8s %s", step, name, "skipped", build)
            continue
        artifacts[name] = build_variant(store, build, stage_context(store, data, verbose, target), step)
    return Built(artifacts, unbuilt)


def run_target(asked: Target, reason: str | None = None) -> Target:
    """The target the run builds for (`asked`: a device's, or `auto`, this host, which is
    said; `reason` says why a device's)."""
    target = resolve(asked)
    if asked is Target.AUTO:
        log.info("target: auto → %s (this host: %s)", target, host_target()[1])
    else:
        log.info("target: %s%s", target, f" ({reason})" if reason else "")
    return target


def stage_context(store: Store, data: RunData, verbose: bool, target: Target) -> StageContext:
    """What every stage of the run gets (out_dir is each build's own, set when it runs)."""
    return StageContext(
        store.root,
        data.probe,
        verbose,
        calibration=data.calibration,
        evaluation=data.evaluation,
        training=data.training,
        evaluation_on=data.evaluation_on,
        cache_dir=store.root,
        target=target,
    )


def build_root(loaded: LoadedRecipe, store: Store, data: RunData, total: int) -> Artifact:
    root, key = root_key(loaded, data)
    return build_or_reuse(store, key, root.make, f"[1/{total}] load_model", root.label)


def root_key(loaded: LoadedRecipe, data: RunData) -> tuple[RootBuild, str]:
    root = root_build(loaded, data)
    return root, stage_key(None, "load_model", LOAD_MODEL_VERSION, root.options, data.fingerprint(False, False))


def prepare(loaded: LoadedRecipe, name: str, parent: Artifact, data: RunData, target: Target) -> Build | str:
    """The variant's build, or why it cannot be built on this machine. Options get the
    run's defaults (the resolved target, an engine's batch range) so the key shows them."""
    variant = loaded.recipe.variants[name]
    stage = STAGES[variant.stage]
    if stage.requires is not None:
        # engines and OpenVINO IR end a chain (no stage takes either): nothing is orphaned
        availability = probe(stage.requires)
        if not availability.ok:
            return f"not built: {stage.requires}: {availability.reason}"
    options = loaded.options[name]
    if stage.complete_options is not None:
        bench = loaded.recipe.bench
        every_batch = [*bench.batch_sizes, bench.accuracy_batch_size, len(next(iter(data.probe.values())))]
        options = stage.complete_options(options, parent, bench.batch_sizes, every_batch)
    if "target" in type(options).model_fields:
        options = options.model_copy(update={"target": resolve(options.target, target)})
    samples = data.fingerprint(stage.calibrated, stage.trained)
    key = stage_key(parent.sha256, variant.stage, stage.version, options.model_dump(mode="json"), samples)
    return Build(name, stage, parent, options, key)


def build_variant(store: Store, build: Build, context: StageContext, step: str) -> Artifact:
    """Build or reuse the variant; a verification that failed ends the run in one line."""

    def make(out_dir: Path) -> Artifact:
        return build.stage.function(build.parent, build.options, dataclasses.replace(context, out_dir=out_dir))

    artifact = build_or_reuse(store, build.key, make, step, build.name, build.stage.stale)
    failed = verification_failure(artifact)
    if failed:
        raise VerificationError(f"variants.{build.name}: {failed}")
    return artifact


def verification_failure(artifact: Artifact) -> str | None:
    """One line where the artifact differs from its reference beyond tolerance."""
    if artifact.verification is None or artifact.verification.passed:
        return None
    return f"{artifact.stage} output differs from its reference: {describe_failures(artifact.verification)}"


def build_or_reuse(
    store: Store, key: str, make: Callable[[Path], Artifact], step: str, label: str, stale=None
) -> Artifact:
    """The cached artifact under `key`, or a new one; logs the stage's one line either way.
    `stale(artifact)` says why a cached one cannot serve on this machine (it is rebuilt)."""
    began = time.perf_counter()
    artifact = reusable(store, key, label, stale)
    took = "cached"
    if artifact is None:
        artifact = store.build(key, make)
        took = f"{time.perf_counter() - began:.1f} s"
    log_built(step, label, took, artifact)
    return artifact


def reusable(store: Store, key: str, label: str, stale=None) -> Artifact | None:
    """The artifact under `key` if it can serve; a stale one is discarded (to be rebuilt)."""
    artifact = store.get(key)
    if artifact is not None and stale is not None:
        reason = stale(artifact)
        if reason:
            log.warning("%s: %s: rebuilding it from its source", label, reason)
            store.discard(key)
            artifact = None
    return artifact


def log_built(step: str, label: str, took: str, artifact: Artifact, where: str = "") -> None:
    """The stage's one line: position, name, `cached` or its time, size, verification."""
    figures = [f"{artifact.facts.get('size_bytes', 0) / 1e6:.2f} MB"]
    if artifact.verification is not None:
        worst = artifact.verification.worst()
        verdict = "verified" if artifact.verification.passed else "FAILED"
        figures.append(f"{verdict} max_abs {worst.max_abs:.2g} cosine {worst.cosine_min:.6f}")
    if artifact.facts.get("upgraded"):
        from edgeopt.core.onnx_model import describe_upgrade

        figures.append(f"upgraded {describe_upgrade(artifact.facts['upgraded'])}")
    if where:
        figures.append(where)
    log.info("%-24s %-14s %-8s %s", step, label, took, "  ".join(figures))
