"""The `pack_codebook` stage: ONNX weights that take few distinct values stored as a float
codebook plus uint8 indices, decoded in the graph by Cast and Gather.

ONNX artifact → smaller ONNX artifact, verified against its input. ONNX Runtime folds the
Cast + Gather of constants at load, so it runs dense float weights: the file and the
download shrink, the latency and the resident memory do not.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.verify import verify_against
from edgeopt.core.artifact import Artifact
from edgeopt.core.context import StageContext
from edgeopt.core.numeric import Tolerance


class PackCodebookOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_values: int = Field(256, ge=2, le=256, description="pack a float weight with at most this many distinct values")
    min_elements: int = Field(
        1024, ge=1, description="leave smaller weights dense (a codebook does not pay for itself there)"
    )
    tolerance: Tolerance = Field(
        Tolerance(atol=1e-6, rtol=1e-6), description="how close the packed graph's outputs must be to its input's"
    )


def pack_codebook(artifact: Artifact, options: PackCodebookOptions, context: StageContext) -> Artifact:
    """Replace each qualifying initializer by codebook + uint8 indices (tied weights are one
    initializer already: the exporters store equal tensors once)."""
    import onnx

    from edgeopt.core.onnx_model import graph_io, load_onnx, model_facts, save_onnx

    model = load_onnx(artifact.path)
    packed, dense_bytes, packed_bytes = _pack(model.graph, options)
    onnx.checker.check_model(model)
    path = context.out_dir / "model.onnx"
    save_onnx(model, path)
    facts = model_facts(model, path)
    facts["codebook"] = {
        "tensors_packed": packed,
        "dense_bytes": dense_bytes,
        "packed_bytes": packed_bytes,
        "summary": (
            f"{packed} weights ({dense_bytes / 1e3:.0f} kB dense) stored as codebooks + uint8 indices "
            f"({packed_bytes / 1e3:.0f} kB); "
            f"file {artifact.facts.get('size_bytes', 0) / 1e3:.0f} kB → {path.stat().st_size / 1e3:.0f} kB. "
            "ONNX Runtime folds Cast + Gather of constants at load: it runs dense float weights, "
            "so latency and resident memory match the dense graph"
        ),
    }
    packed_artifact = Artifact(
        path=path,
        format=artifact.format,
        precision=artifact.precision,
        stage="pack_codebook",
        options=options.model_dump(mode="json"),
        parent=artifact.sha256,
        io=graph_io(model),
        modules=artifact.modules,
        facts=facts,
    )
    verification = verify_against(artifact, packed_artifact, context.probe, options.tolerance, context.verbose)
    return dataclasses.replace(packed_artifact, verification=verification)


def _pack(graph, options: PackCodebookOptions) -> tuple[int, int, int]:
    """Rewrite the graph's few-valued initializers in place; returns how many were packed
    and their dense and packed bytes."""
    import onnx
    from onnx import helper, numpy_helper

    kept, decoders = [], []
    packed = dense_bytes = packed_bytes = 0
    for initializer in graph.initializer:
        array = numpy_helper.to_array(initializer)
        values = np.unique(array) if array.dtype == np.float32 and array.size >= options.min_elements else None
        if values is None or len(values) > options.max_values:
            kept.append(initializer)
            continue
        indices = np.searchsorted(values, array).astype(np.uint8)
        packed += 1
        dense_bytes += array.nbytes
        packed_bytes += values.nbytes + indices.nbytes
        codebook, index, wide = (f"{initializer.name}__{part}" for part in ("codebook", "indices", "int32"))
        kept += [numpy_helper.from_array(values, codebook), numpy_helper.from_array(indices, index)]
        decoders += [
            helper.make_node("Cast", [index], [wide], to=onnx.TensorProto.INT32),
            helper.make_node("Gather", [codebook, wide], [initializer.name], axis=0),
        ]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [*decoders, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    return packed, dense_bytes, packed_bytes
