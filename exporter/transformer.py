"""The `optimize_transformer` stage: ONNX Runtime's transformer graph optimizer (attention,
LayerNorm, GELU and embedding fusions into its contrib ops), verified against the input.

The fused graph uses ONNX Runtime's `com.microsoft` operators, so it is for ONNX Runtime.
Fused FP32 runs about as fast as the plain export (ORT fuses much of it at load anyway);
the gain is for dynamic INT8, which quantizes the attention's QKV projection in one
QAttention node.
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
from edgeopt.core.onnx_model import has_subgraphs, input_facts, load_onnx
from exporter.transform import finish

log = logging.getLogger(__name__)


class ModelType(StrEnum):
    BERT = "bert"
    GPT2 = "gpt2"
    BART = "bart"
    T5 = "t5"
    VIT = "vit"


class OptimizeTransformerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: ModelType = Field(ModelType.BERT, description="the architecture family, which picks the fusions")
    num_heads: int = Field(0, ge=0, description="attention heads (0: guessed from the graph, which can fail)")
    hidden_size: int = Field(0, ge=0, description="hidden size (0: guessed from the graph)")
    attention: bool = Field(True, description="fuse self-attention into one Attention node")
    skip_layer_norm: bool = Field(
        True,
        description="fuse residual Add + LayerNorm into SkipLayerNormalization (fast on CUDA; on the CPU, "
        "Add and LayerNormalization kept apart ran 5× faster with ORT 1.32)",
    )
    gelu_approximation: bool = Field(
        False,
        description="GELU by its tanh approximation (FastGelu): about 1e-3 from erf-GELU, and faster on the CPU",
    )
    tolerance: Tolerance = Field(Tolerance(), description="agreement with the input model on the probe")


def optimize_transformer(artifact: Artifact, options: OptimizeTransformerOptions, context: StageContext) -> Artifact:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model = load_onnx(artifact.path)
    before = input_facts(model, artifact.path)
    fusion = FusionOptions(str(options.model_type))
    fusion.enable_attention = options.attention
    fusion.enable_skip_layer_norm = fusion.enable_bias_skip_layer_norm = options.skip_layer_norm
    fusion.enable_gelu_approximation = options.gelu_approximation
    # a graph with subgraphs (remove_padding's per-row Loop) is fused without symbolic shapes:
    # the fusions skip their shape checks, and the verification below still compares outputs
    fusion.enable_shape_inference = not has_subgraphs(model)
    try:
        # the optimizer logs every fusion at INFO and prints; opt_level 0: its own fusions only,
        # no ONNX Runtime session (which would write temporary files)
        with _quiet(), contextlib.redirect_stdout(io.StringIO()):
            optimized = optimize_model(
                model, str(options.model_type), options.num_heads, options.hidden_size, fusion, opt_level=0
            )
            statistics = optimized.get_fused_operator_statistics()
    except Exception as err:  # the fusion passes raise whatever they meet on unusual graphs
        raise ExportError(f"{artifact.path}: optimize_transformer failed: {first_line(err)}") from err
    fused = {op: count for op, count in statistics.items() if count}
    domains = {node.domain for node in optimized.model.graph.node} - {o.domain for o in optimized.model.opset_import}
    optimized.model.opset_import.extend(onnx.helper.make_opsetid(domain, 1) for domain in sorted(domains) if domain)
    if not fused:
        log.warning("optimize_transformer: no %s pattern fused in %s", options.model_type, artifact.path.name)
    return finish(
        artifact,
        optimized.model,
        context,
        stage="optimize_transformer",
        options=options,
        precision=artifact.precision,
        before=before,
        facts={"fused": fused, "runs_on": "ONNX Runtime (com.microsoft contrib operators)"},
    )


@contextlib.contextmanager
def _quiet():
    """The optimizer's modules log each fusion (and a failed head-count guess) under their
    own top-level names; below -v none of it is ours to show."""
    previous = logging.root.manager.disable
    if not log.isEnabledFor(logging.DEBUG):
        logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
