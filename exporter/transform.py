"""The common start and ending of every ONNX → ONNX stage: the input modernized for the
tools (`start`); then save, check, record, verify (`finish`).

The result carries its input's figures (`before`), what was upgraded, and its node →
module map forward, and its verification against the input on the probe samples.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import onnx
from pydantic import BaseModel, Field

from bench.verify import verify_against
from edgeopt.core.artifact import Artifact, Precision
from edgeopt.core.context import StageContext
from edgeopt.core.errors import ExportError, first_line
from edgeopt.core.onnx_model import (
    Modernized,
    check_onnx,
    graph_io,
    has_subgraphs,
    input_facts,
    list_as_inputs,
    load_onnx,
    model_facts,
    modernize,
    save_onnx,
    sort_topologically,
)
from runtimes.openvino_ops import openvino_not_for


def keep_initializers_field():
    """The option every ONNX → ONNX stage has for models that list weights as inputs."""
    return Field(
        False,
        description="a model that lists its weights as graph inputs too (IR version 3 required it): keep those "
        "still there listed, overridable at run time (ONNX Runtime then folds nothing with them), instead of "
        "making them plain initializers",
    )


def start(source: Artifact, opset: int | None = None) -> tuple[Modernized, dict]:
    """The source model modernized for the tools (see onnx_model.modernize; `opset`: the
    lowest the stage's tool takes), and its figures before the stage."""
    model = load_onnx(source.path)
    before = input_facts(model, source.path)
    return modernize(model, source.path, opset), before


def _save_checked(model: onnx.ModelProto, path: Path, what: str, full_check: bool) -> None:
    """Save `model` and check it; a graph with subgraphs is sorted first, as ONNX Runtime's
    tools sort without counting what subgraphs read from outer scopes."""
    if has_subgraphs(model):
        sort_topologically(model.graph)
    save_onnx(model, path)
    try:
        check_onnx(path, full=full_check)
    except Exception as err:  # onnx.checker.ValidationError
        raise ExportError(f"{what} produced an invalid model: {first_line(err)}") from err


def finish(
    source: Artifact,
    model: onnx.ModelProto,
    context: StageContext,
    *,
    stage: str,
    options: BaseModel,
    precision: Precision,
    before: dict,
    facts: dict,
    full_check: bool = False,
    simulate: bool = False,
    target: str | None = None,
    not_for: dict[str, str] | None = None,
    legacy: Modernized | None = None,
    keep_listed: bool = False,
    simulation: tuple[onnx.ModelProto, str] | None = None,
) -> Artifact:
    """Save `model` as the stage's artifact, check it, and verify it against `source`.

    full_check: strict shape inference too (types must agree everywhere).
    simulate: verify by the INT8's exact arithmetic (see bench.verify.verify_against).
    target: the machine the result was built for, where that shaped it.
    not_for: runtime id → why the result is not measured there (besides the OpenVINO
    runtimes, for contrib operators OpenVINO cannot read).
    legacy: the modernized source (from `start`), whose upgrades the record names.
    keep_listed: list the weights the source listed as graph inputs as inputs again.
    simulation: a model computing the result's arithmetic explicitly (BF16 rounding), and
    what it simulates: verified in the result's place, on any CPU."""
    if legacy is not None:
        upgraded = dict(legacy.upgraded)
        if keep_listed and legacy.listed_weights:
            upgraded["weights_kept_listed"] = list_as_inputs(model, legacy.listed_weights)
        if upgraded:
            facts = {**facts, "upgraded": upgraded}
    path = context.out_dir / "model.onnx"
    _save_checked(model, path, f"{source.path}: {stage}", full_check)
    result = Artifact(
        path=path,
        format=source.format,
        precision=precision,
        stage=stage,
        options=options.model_dump(mode="json"),
        parent=source.sha256,
        io=graph_io(model),
        target=target,
        modules=source.modules,
        not_for={**(not_for or {}), **openvino_not_for(model.graph.node)},
        facts={**model_facts(model, path), **facts, "before": before},
    )
    if simulation is None:
        verification = verify_against(source, result, context.probe, options.tolerance, context.verbose, simulate)
    else:
        verification = _verify_simulated(source, result, context, options.tolerance, *simulation)
    return dataclasses.replace(result, verification=verification)


def _verify_simulated(source: Artifact, result: Artifact, context: StageContext, tolerance, model, what: str):
    scratch = context.out_dir / ".simulated"
    scratch.mkdir(exist_ok=True)
    try:
        save_onnx(model, scratch / "model.onnx")
        stand_in = dataclasses.replace(result, path=scratch / "model.onnx")
        return verify_against(source, stand_in, context.probe, tolerance, context.verbose, arithmetic=what)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
