"""An accuracy budget for INT8: which quantized nodes stay float so that a metric (top-1
against labels, or mean cosine to the float model) drops no more than `max_drop`.

The nodes are ranked by the error each one's quantization adds (exporter/sensitivity.py).
The fewest of the most sensitive that meet the budget when kept in float are found by
bisection on their count; then each kept node is tried in INT8 again and stays INT8 where
the budget holds without it. Each try quantizes the whole model again (the stage's own
quantizer, with those nodes excluded) and scores it on the evaluation split.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path

import onnx
from pydantic import BaseModel, ConfigDict, Field

from edgeopt.core.context import StageContext
from edgeopt.core.errors import DataError
from runtimes.base import SessionOptions

log = logging.getLogger(__name__)


class Metric(StrEnum):
    TOP1 = "top1"
    COSINE = "cosine"


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: Metric = Field(Metric.TOP1, description="top1 against labels, or mean cosine to the float model's outputs")
    max_drop: float = Field(
        0.005, ge=0, le=1, description="largest drop allowed from the float model (top1: 0.005 is half a point)"
    )


def fit_budget(
    prepared: Path,
    output: Path,
    quantize,
    budget: Budget,
    context: StageContext,
    feeds: dict,
    simulate: bool,
    modules: dict[str, str],
) -> dict:
    """Keep the fewest of the most sensitive nodes in float that bring the metric drop
    within budget; then put back in INT8 each kept node the budget holds without.
    Returns what was kept and the metric at each step; what keeping them costs in latency
    is the benchmark's to measure, beside the other rows."""
    from bench.verify import simulated_options
    from exporter.sensitivity import rank_nodes

    evaluation = context.evaluation
    if evaluation is None or (budget.metric is Metric.TOP1 and evaluation.labels is None):
        raise DataError(f"an accuracy budget on {budget.metric} needs labelled evaluation samples")
    # another target's INT8 is judged by its exact arithmetic, not by this CPU's kernels
    int8_options = simulated_options(output) if simulate else SessionOptions()
    float_outputs = _predict(prepared, evaluation, SessionOptions())
    baseline = _metric(budget.metric, float_outputs, evaluation, float_outputs)

    def write(kept: list[dict]) -> None:
        quantize([k["node"] for k in kept])

    def score() -> float:
        return _metric(budget.metric, _predict(output, evaluation, int8_options), evaluation, float_outputs)

    def measure(kept: list[dict]) -> float:
        write(kept)
        return score()

    measured, floor = score(), baseline - budget.max_drop
    steps = [{"kept_float": 0, "metric": measured}]
    kept: list[dict] = []
    if measured < floor:
        ranked = [
            {"node": name, "op_type": op_type, "local_error": error, "module": modules.get(name)}
            for name, op_type, error in rank_nodes(prepared, output, feeds, output.parent)
        ]
        kept, measured = _shortest_prefix(ranked, measure, floor, steps)
        if measured >= floor:
            kept, measured = _requantize_unneeded(kept, measured, measure, write, floor, steps)
    all_float = bool(kept) and not _int8_weights_left(output)
    if all_float:
        _say_all_float(budget, steps[0]["metric"], baseline)
    return {
        "metric": str(budget.metric),
        "checked_on": f"{context.evaluation_on} split ({len(evaluation)} samples)",
        "max_drop": budget.max_drop,
        "float": baseline,
        "int8": measured,
        "met": measured >= floor,
        "kept_float": kept,
        "all_float": all_float,
        "steps": steps,
    }


def _say_all_float(budget: Budget, all_int8: float, baseline: float) -> None:
    log.warning(
        "the accuracy budget kept every quantized node in float (all INT8: %s %.5f against %.5f): "
        "the result computes in float; loosen the budget or quantize another way",
        *(budget.metric, all_int8, baseline),
    )


def _shortest_prefix(ranked: list[dict], measure, floor: float, steps: list[dict]) -> tuple[list[dict], float]:
    """The fewest of the most sensitive nodes whose keeping in float brings the metric to
    `floor`, by bisection on how many (all of them, the float model, meets any budget the
    INT8 itself does not break). The metric does not rise strictly with each node kept;
    bisection finds a count that meets the floor with one count below that does not, in
    about log2(nodes) quantizations where one more at a time took one per node kept."""
    low, high = 0, len(ranked)  # low fails (steps[0]); high is assumed to meet until measured
    at_high = None
    while high - low > 1:
        middle = (low + high) // 2
        metric = measure(ranked[:middle])
        steps.append({"kept_float": middle, "metric": metric})
        if metric >= floor:
            high, at_high = middle, metric
        else:
            low = middle
    if at_high is None:
        at_high = measure(ranked[:high])
        steps.append({"kept_float": high, "metric": at_high})
    return ranked[:high], at_high


def _requantize_unneeded(
    kept: list[dict], measured: float, measure, write, floor: float, steps: list[dict]
) -> tuple[list[dict], float]:
    """The ranking is from each node's error alone, so a prefix of it holds nodes the others
    make needless. Try each kept node in INT8 again, the least sensitive first, and leave
    it INT8 where the metric stays at `floor` or above. On all-MiniLM-L6-v2 (budget 0.003)
    this put 11 of 21 kept MatMuls back in INT8."""
    last_written = None  # the bisection may have written another set last
    for entry in kept[::-1]:
        trial = [k for k in kept if k is not entry]
        metric = measure(trial)
        last_written = trial
        accepted = metric >= floor
        steps.append({"kept_float": len(trial), "metric": metric, "requantized": entry["node"], "accepted": accepted})
        if accepted:
            kept, measured = trial, metric
    if last_written is not kept:  # the output file holds the last trial: write the kept set again
        write(kept)
    return kept, measured


def _int8_weights_left(path: Path) -> bool:
    """Whether any weight (an initializer of two dims or more) is still 8-bit."""
    eight_bit = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    return any(t.data_type in eight_bit and len(t.dims) >= 2 for t in onnx.load(str(path)).graph.initializer)


def _predict(path: Path, split, options: SessionOptions):
    """The first output over a whole split."""
    from bench.accuracy import predict
    from runtimes.ort import open_model

    session = open_model(path, "cpu", options)
    return next(iter(predict(session, split, batch_size=64).values()))


def _metric(metric: Metric, outputs, split, float_outputs) -> float:
    from edgeopt.core.numeric import row_cosine

    if metric is Metric.TOP1:
        return float((outputs.argmax(axis=1) == split.labels).mean())
    return float(row_cosine(float_outputs, outputs).mean())
