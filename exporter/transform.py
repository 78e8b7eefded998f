"""The common ending of every ONNX → ONNX stage: save, check, record, verify.

The result carries its input's figures (`before`) and node → module map forward, and
its verification against the input on the probe samples.
"""

from __future__ import annotations

import dataclasses

import onnx
from pydantic import BaseModel

from edgeopt.artifact import Artifact, Precision
from edgeopt.context import StageContext
from edgeopt.errors import ExportError, first_line
from exporter.onnx_facts import graph_io, model_facts
from exporter.onnx_io import check_onnx, save_onnx
from exporter.verify import verify_against


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
) -> Artifact:
    """Save `model` as the stage's artifact, check it, and verify it against `source`.

    full_check: strict shape inference too (types must agree everywhere).
    simulate: verify by the INT8's exact arithmetic (see exporter.verify.verify_against).
    target: the machine the result was built for, where that shaped it."""
    path = context.out_dir / "model.onnx"
    save_onnx(model, path)
    try:
        check_onnx(path, full=full_check)
    except Exception as err:  # onnx.checker.ValidationError
        raise ExportError(f"{source.path}: {stage} produced an invalid model: {first_line(err)}") from err
    result = Artifact(
        path=path,
        format=source.format,
        precision=precision,
        stage=stage,
        options=options.model_dump(mode="json"),
        parent=source.sha256,
        io=graph_io(model),
        facts={**model_facts(model, path), **facts, "before": before, "modules": source.facts.get("modules", {})},
        target=target,
    )
    verification = verify_against(source, result, context.probe, options.tolerance, context.verbose, simulate)
    return dataclasses.replace(result, verification=verification)
