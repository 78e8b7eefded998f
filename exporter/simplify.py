"""The `simplify` stage: constant folding, dead-node removal, shape inference and fusions
by a maintained simplifier, verified against the input model.

onnxslim is the default, and ONNX Runtime's offline optimizations are not applied (ORT
runs them at load time anyway): the README's "Measured choices" gives the node counts.
"""

from __future__ import annotations

import contextlib
import io
import logging
from enum import StrEnum

import onnx
from pydantic import BaseModel, ConfigDict, Field

from edgeopt.core.artifact import Artifact
from edgeopt.core.context import StageContext
from edgeopt.core.errors import ExportError, first_line
from edgeopt.core.numeric import Tolerance
from exporter.transform import finish, keep_initializers_field, start

log = logging.getLogger(__name__)


class Simplifier(StrEnum):
    ONNXSLIM = "onnxslim"
    ONNXSIM = "onnxsim"


class SimplifyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    simplifier: Simplifier = Field(
        Simplifier.ONNXSLIM, description="onnxslim (fewer nodes on TorchScript exports) or onnxsim"
    )
    tolerance: Tolerance = Field(Tolerance(), description="how close the outputs must stay to the input model's")
    keep_initializers_as_inputs: bool = keep_initializers_field()


def simplify(artifact: Artifact, options: SimplifyOptions, context: StageContext) -> Artifact:
    """Simplify an ONNX artifact; the node count never grows (the input is kept if it would)."""
    legacy, before = start(artifact)
    model = legacy.model
    simplified = _run_simplifier(options.simplifier, model, artifact)
    kept_input = len(simplified.graph.node) > before["node_count"]
    if kept_input:
        log.warning("%s made %s larger; keeping the input graph", options.simplifier, artifact.path.name)
        simplified = model
    facts = {"simplifier": str(options.simplifier), "kept_input": kept_input}
    return finish(
        artifact,
        simplified,
        context,
        stage="simplify",
        options=options,
        precision=artifact.precision,
        before=before,
        facts=facts,
        legacy=legacy,
        keep_listed=options.keep_initializers_as_inputs,
    )


def _run_simplifier(simplifier: Simplifier, model: onnx.ModelProto, artifact: Artifact) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            if simplifier is Simplifier.ONNXSLIM:
                import onnxslim

                return onnxslim.slim(copy)
            import onnxsim

            simplified, ok = onnxsim.simplify(copy)
    except Exception as err:  # both libraries raise whatever their passes raise
        other = "onnxsim" if simplifier is Simplifier.ONNXSLIM else "onnxslim"
        raise ExportError(f"{artifact.path}: {simplifier} failed: {first_line(err)} (try simplifier: {other})") from err
    if not ok:
        raise ExportError(f"{artifact.path}: onnxsim's own check of its result failed (try simplifier: onnxslim)")
    return simplified
