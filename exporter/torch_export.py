"""The `export_onnx` stage: torch artifact → verified ONNX artifact.

Dynamic axes come from the symbolic dims of the model's inputs (`batch`, `sequence`, ...);
the export is checked by the ONNX checker and then run on ONNX Runtime against the
PyTorch model on held-out samples.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import warnings
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bench.verify import verify_against
from edgeopt.core.artifact import IO, Artifact, Format, Precision
from edgeopt.core.context import StageContext
from edgeopt.core.errors import ExportError, first_line
from edgeopt.core.numeric import Tolerance
from edgeopt.core.onnx_model import EXTERNAL_DATA_BYTES

log = logging.getLogger(__name__)


class Exporter(StrEnum):
    DYNAMO = "dynamo"
    TORCHSCRIPT = "torchscript"


class ExportOnnxOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    opset: int = Field(18, description="ONNX opset to export to")
    exporter: Exporter = Field(
        Exporter.DYNAMO,
        description="dynamo (torch.export based, torch's default) or torchscript (the tracing exporter); "
        "a TorchScript model always takes torchscript, an exported program dynamo",
    )
    tolerance: Tolerance = Field(Tolerance(), description="how close the export's outputs must be to PyTorch's")

    @field_validator("opset")
    @classmethod
    def _known_opset(cls, opset: int) -> int:
        import onnx

        newest = onnx.defs.onnx_opset_version()
        if not 9 <= opset <= newest:
            raise ValueError(f"opset {opset} is outside 9..{newest}")
        return opset


def export_onnx(artifact: Artifact, options: ExportOnnxOptions, context: StageContext) -> Artifact:
    """Export a torch artifact to `model.onnx` in `context.out_dir` and verify it."""
    import onnx
    import torch

    from edgeopt.core.onnx_model import graph_io, model_facts, node_modules
    from edgeopt.core.torch_artifact import load_module

    options = options.model_copy(update={"exporter": _exporter_for(artifact, options.exporter)})
    module = load_module(artifact)
    specs = artifact.io.inputs
    # fresh C-order copies: the trace follows a size-1 dim's stride, which numpy leaves as the
    # source array had it (a dataset's view) or normalises (the same probe pickled to a Ray task)
    example = tuple(torch.from_numpy(np.array(context.probe[s.name], order="C")) for s in specs)
    path = context.out_dir / "model.onnx"
    parameter_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    try:
        _run_exporter(
            module, example, artifact.io, options, str(path), parameter_bytes > EXTERNAL_DATA_BYTES, context.verbose
        )
        if options.exporter is Exporter.DYNAMO:
            _drop_stack_traces(path)
        onnx.checker.check_model(str(path))
    except (ExportError, KeyboardInterrupt):
        raise
    except Exception as err:  # torch and onnx raise many unrelated types here
        other = "torchscript" if options.exporter is Exporter.DYNAMO else "dynamo"
        raise ExportError(
            f"export to ONNX ({options.exporter}) failed: {first_line(err)} (try exporter: {other})"
        ) from err

    model = onnx.load(str(path), load_external_data=False)
    onnx_io = graph_io(model)
    exported = Artifact(
        path=path,
        format=Format.ONNX,
        precision=Precision.FP32,
        stage="export_onnx",
        options=options.model_dump(mode="json"),
        parent=artifact.sha256,
        io=onnx_io,
        modules=node_modules(model),
        facts={**model_facts(model, path), "exporter": str(options.exporter)},
    )
    verification = verify_against(artifact, exported, context.probe, options.tolerance, context.verbose)
    return dataclasses.replace(exported, verification=verification)


def _exporter_for(artifact: Artifact, chosen: Exporter) -> Exporter:
    """The exporter that can read the model: torch.export cannot trace TorchScript, and an
    exported program's module refuses the TorchScript exporter's train(False)."""
    from edgeopt.core.artifact import ModelFile

    kind = artifact.source.file_kind if artifact.source else None
    only = {ModelFile.TORCHSCRIPT: Exporter.TORCHSCRIPT, ModelFile.EXPORTED: Exporter.DYNAMO}.get(kind)
    if only is not None and only is not chosen:
        log.info("exporting the %s model with the %s exporter, the one that reads it", kind, only)
        return only
    return chosen


def _run_exporter(
    module, example, model_io: IO, options: ExportOnnxOptions, path: str, external: bool, verbose: bool
) -> None:
    import torch

    input_names = [s.name for s in model_io.inputs]
    output_names = [s.name for s in model_io.outputs]
    quiet = contextlib.nullcontext() if verbose else _silenced()
    with quiet, warnings.catch_warnings():
        warnings.simplefilter("default" if verbose else "ignore")
        if options.exporter is Exporter.DYNAMO:
            dims: dict[str, object] = {}
            dynamic_shapes = tuple(
                {
                    axis: dims.setdefault(d, torch.export.Dim(d, min=1))
                    for axis, d in enumerate(s.shape)
                    if isinstance(d, str)
                }
                for s in model_io.inputs
            )
            torch.onnx.export(
                module,
                example,
                path,
                input_names=input_names,
                output_names=output_names,
                opset_version=options.opset,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                external_data=external,
                verbose=verbose,
            )
        else:
            dynamic_axes = {
                spec.name: {axis: d for axis, d in enumerate(spec.shape) if isinstance(d, str)}
                for spec in (*model_io.inputs, *model_io.outputs)
            }
            torch.onnx.export(
                module,
                example,
                path,
                input_names=input_names,
                output_names=output_names,
                opset_version=options.opset,
                dynamo=False,
                dynamic_axes={k: v for k, v in dynamic_axes.items() if v},
            )


@contextlib.contextmanager
def _silenced():
    """The exporter prints progress and warns about optional torchvision ops; keep that below -v.

    torch configures its own loggers when it is imported, so the level is set here, not in log.py.
    """
    torch_onnx = logging.getLogger("torch.onnx")
    level = torch_onnx.level
    torch_onnx.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        torch_onnx.setLevel(level)


_STACK_TRACE = "pkg.torch.onnx.stack_trace"


def _drop_stack_traces(path) -> None:
    """The dynamo exporter stores each node's Python stack trace, absolute file paths
    included, so the same model exported from another checkout would differ byte for byte."""
    from edgeopt.core.onnx_model import load_onnx, save_onnx

    model = load_onnx(path)
    for node in model.graph.node:
        kept = [entry for entry in node.metadata_props if entry.key != _STACK_TRACE]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    for written in path.parent.glob(f"{path.name}*"):  # the weights are in memory now; rewrite them whole
        written.unlink()
    save_onnx(model, path)
