"""The common ending of every ONNX → ONNX stage: save, check, record, verify.

The result carries its input's figures (`before`) and node → module map forward, and
its verification against the input on the probe samples.
"""

from __future__ import annotations

import dataclasses

import onnx
from pydantic import BaseModel

from bench.verify import verify_against
from edgeopt.core.artifact import Artifact, Precision
from edgeopt.core.context import StageContext
from edgeopt.core.errors import ExportError, first_line
from edgeopt.core.onnx_model import check_onnx, graph_io, model_facts, save_onnx


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
) -> Artifact:
    """Save `model` as the stage's artifact, check it, and verify it against `source`.

    full_check: strict shape inference too (types must agree everywhere).
    simulate: verify by the INT8's exact arithmetic (see bench.verify.verify_against).
    target: the machine the result was built for, where that shaped it.
    not_for: runtime id → why the result is not measured there."""
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
        target=target,
        modules=source.modules,
        not_for=not_for or {},
        facts={**model_facts(model, path), **facts, "before": before},
    )
    verification = verify_against(source, result, context.probe, options.tolerance, context.verbose, simulate)
    return dataclasses.replace(result, verification=verification)
