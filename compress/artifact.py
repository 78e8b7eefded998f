"""Compressed torch modules in and out of artifacts.

A compressed module is saved as a state dict plus a factory that rebuilds its structure
from the parent's factory (`base`) and the structural edit, so `build_module` and
`export_onnx` work on it unchanged.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from edgeopt.artifact import Artifact, Format, Precision
from edgeopt.context import StageContext
from edgeopt.errors import ModelLoadError
from edgeopt.factory import resolve_factory
from edgeopt.models import WEIGHTS_FILE
from exporter.verify import Tolerance, compare_outputs
from runtimes.torch_eager import build_module

if TYPE_CHECKING:
    import torch


def base_of(artifact: Artifact, stage: str) -> dict:
    """The factory that rebuilds the artifact's module, as JSON: factory, kwargs, factory_dir."""
    if not artifact.facts.get("factory"):
        raise ModelLoadError(
            f"{stage}: the model has no factory to rebuild it from (a pickled model); give a factory source instead"
        )
    return {
        "factory": artifact.facts["factory"],
        "kwargs": artifact.facts.get("factory_kwargs", {}),
        "factory_dir": artifact.facts.get("factory_dir"),
    }


def build_base(base: dict) -> torch.nn.Module:
    """A fresh module from a `base_of` record (its weights untrained)."""
    factory_dir = base.get("factory_dir")
    return resolve_factory(base["factory"], Path(factory_dir) if factory_dir else None)(**base["kwargs"])


def input_names(artifact: Artifact) -> list[str]:
    return [spec.name for spec in artifact.io.inputs]


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_compressed(
    module: torch.nn.Module,
    parent: Artifact,
    stage: str,
    options: BaseModel,
    base: dict,
    context: StageContext,
    compression: dict,
) -> Artifact:
    """Save the module as a torch artifact rebuilt by `base`, and check the rebuild.

    The check runs the artifact as every later stage will (factory, then state dict) and
    compares it with the module in memory on the probe samples: a structural edit the
    factory cannot reproduce fails here, not at export.
    """
    import torch

    module.eval()
    path = context.out_dir / WEIGHTS_FILE
    torch.save(module.state_dict(), path)
    zeros = sum(int((p == 0).sum()) for p in module.parameters())
    facts = {
        "factory": base["factory"],
        "factory_kwargs": base["kwargs"],
        "factory_dir": base.get("factory_dir"),
        "parameters": parameter_count(module),
        "zero_parameters": zeros,
        "size_bytes": path.stat().st_size,
        "compression": compression,
    }
    artifact = Artifact(
        path=path,
        format=Format.TORCH,
        precision=Precision.FP32,
        stage=stage,
        options=options.model_dump(mode="json"),
        parent=parent.sha256,
        io=parent.io,
        facts=facts,
    )
    names = input_names(parent)
    feeds = [torch.from_numpy(context.probe[name]) for name in names]
    rebuilt = build_module(artifact)
    with torch.inference_mode():
        expected, actual = module(*feeds), rebuilt(*feeds)
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    actual = actual if isinstance(actual, (tuple, list)) else (actual,)
    output_names = [spec.name for spec in parent.io.outputs]
    verification = compare_outputs(
        {n: t.numpy() for n, t in zip(output_names, expected, strict=True)},
        {n: t.numpy() for n, t in zip(output_names, actual, strict=True)},
        Tolerance(atol=1e-6, rtol=1e-6),
        reference_name=f"the {stage} module in memory, before saving",
    )
    return dataclasses.replace(artifact, verification=verification)
