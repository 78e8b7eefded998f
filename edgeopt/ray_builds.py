"""The variant graph as Ray tasks: the source model first, then each variant submitted as
soon as its parent exists, so independent branches build on different workers at once.

The driver (this process) computes every key, reuses what the store holds and logs each
stage's line; a task only builds one artifact into the shared run folder and returns its
record. Keys are the same as a local run's, so a variant built on any worker is the same
file with the same sha256. A build that fails fails its variant (and what is made from
it) with one line; the others go on. A task whose node dies is retried elsewhere; the
store keeps whichever attempt published first.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeopt.core.artifact import Artifact
from edgeopt.core.context import StageContext
from edgeopt.core.errors import ClusterError
from edgeopt.core.targets import Target
from edgeopt.executor import TaskFailure
from edgeopt.plan import Built, log_built, prepare, reusable, root_key, run_target, stage_context, verification_failure
from edgeopt.ray_cluster import gather, node_name, outcome
from edgeopt.recipe import LoadedRecipe
from edgeopt.sources import RunData, root_build
from edgeopt.stages import STAGES
from edgeopt.store import Store

log = logging.getLogger(__name__)

# a task whose worker or node dies is run again elsewhere; an exception it raises is not
# retried (a stage that failed once fails again on the same inputs)
BUILD_RETRIES = 2


def build_root_task(root: str, key: str, loaded: LoadedRecipe, data: RunData) -> tuple[Artifact, float]:
    """On a worker: the source model, built into the shared run folder."""
    began = time.perf_counter()
    artifact = _task_store(root).build(key, root_build(loaded, data).make)
    return artifact, time.perf_counter() - began


def build_variant_task(
    root: str, key: str, stage: str, parent: Artifact, options, context: StageContext
) -> tuple[Artifact, float]:
    """On a worker: one variant, its stage run on its parent, built into the shared run folder."""
    began = time.perf_counter()
    function = STAGES[stage].function

    def make(out_dir: Path) -> Artifact:
        return function(parent, options, dataclasses.replace(context, out_dir=out_dir))

    artifact = _task_store(root).build(key, make)
    return artifact, time.perf_counter() - began


def _task_store(root: str) -> Store:
    where = node_name()
    if not Path(root).is_dir():
        raise ClusterError(
            f"{where}: the run folder {root} is not there; every node of the cluster needs it on a shared filesystem"
        )
    return Store(Path(root), sweep=False, built_on=where)


class _Remote:
    """The task functions as Ray remote functions, declared once per run."""

    def __init__(self, ray):
        options = {"num_cpus": 1, "max_retries": BUILD_RETRIES, "retry_exceptions": False}
        self.put = ray.put
        self.build_root = ray.remote(**options)(build_root_task)
        self.build_variant = ray.remote(**options)(build_variant_task)


@dataclass
class _Sweep:
    """The driver's state: what is built, what runs, what failed."""

    loaded: LoadedRecipe
    store: Store
    data: RunData
    target: Target
    remote: _Remote
    context: object  # ObjectRef of the run's StageContext, shared by every task
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    unbuilt: dict[str, str] = field(default_factory=dict)
    failed: dict[str, TaskFailure] = field(default_factory=dict)
    pending: dict = field(default_factory=dict)  # ObjectRef → (variant, its label in the log)

    def step(self, name: str) -> str:
        total = 1 + len(self.loaded.order)
        if name == "model":
            return f"[1/{total}] load_model"
        position = self.loaded.order.index(name) + 2
        return f"[{position}/{total}] {self.loaded.recipe.variants[name].stage}"

    def start(self) -> None:
        root, key = root_key(self.loaded, self.data)
        cached = reusable(self.store, key, root.label)
        if cached is not None:
            self.ready("model", cached, "cached", root.label)
            return
        ref = self.remote.build_root.remote(str(self.store.root), key, self.loaded, self.remote.put(self.data))
        self.pending[ref] = ("model", root.label)

    def ready(self, name: str, artifact: Artifact, took: str, label: str | None = None) -> None:
        where = "" if took == "cached" else f"on {artifact.facts.get('built_on', '?')}"
        log_built(self.step(name), label or name, took, artifact, where)
        failure = verification_failure(artifact)
        if failure:
            self.fail(name, TaskFailure(failure, input=True))
            return
        self.artifacts[name] = artifact
        self.children_of(name)

    def children_of(self, parent: str) -> None:
        for name in self.loaded.order:
            if self.loaded.recipe.variants[name].from_ == parent:
                self.submit(name)

    def submit(self, name: str) -> None:
        variant = self.loaded.recipe.variants[name]
        build = prepare(self.loaded, name, self.artifacts[variant.from_], self.data, self.target)
        if isinstance(build, str):
            self.unbuilt[name] = build
            log.info("%-24s %-14s %-8s %s", self.step(name), name, "skipped", build)
            return
        cached = reusable(self.store, build.key, name, build.stage.stale)
        if cached is not None:
            self.ready(name, cached, "cached")
            return
        ref = self.remote.build_variant.remote(
            str(self.store.root), build.key, variant.stage, build.parent, build.options, self.context
        )
        self.pending[ref] = (name, name)

    def done(self, what: tuple[str, str], ref) -> None:
        name, label = what
        result = outcome(ref)
        if isinstance(result, TaskFailure):
            self.fail(name, result)
            return
        artifact, seconds = result
        self.ready(name, artifact, f"{seconds:.1f} s", label)

    def fail(self, name: str, failure: TaskFailure) -> None:
        self.failed[name] = failure
        log.error("%-24s %-14s %-8s %s", self.step(name), name, "FAILED", failure.line)
        self.skip_descendants(name, name)

    def skip_descendants(self, parent: str, failed: str) -> None:
        for child in self.loaded.order:
            if self.loaded.recipe.variants[child].from_ == parent:
                self.unbuilt[child] = f"not built: '{failed}', which it is made from, failed"
                self.skip_descendants(child, failed)


def build_on_ray(
    loaded: LoadedRecipe, store: Store, data: RunData, asked: Target, verbose: bool, reason: str | None = None
) -> Built:
    """Every variant of the recipe built on the connected cluster, in the store at `store.root`
    (an absolute path every node sees)."""
    import ray

    target = run_target(asked, reason)
    context = ray.put(stage_context(store, data, verbose, target))
    sweep = _Sweep(loaded, store, data, target, _Remote(ray), context)
    sweep.start()
    gather(sweep.pending, sweep.done)
    built = {"model": sweep.artifacts["model"]} if "model" in sweep.artifacts else {}
    built |= {name: sweep.artifacts[name] for name in loaded.order if name in sweep.artifacts}
    return Built(built, sweep.unbuilt, sweep.failed)
