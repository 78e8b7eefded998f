"""The `smooth_activations` stage (SmoothQuant, Xiao et al. 2023): activation outliers
moved into the weights of the Linear layers that read them, before INT8.

Each chosen `nn.Linear`, y = x·Wᵀ + b, becomes y = (x / s)·(W·s)ᵀ + b with
s_j = max|x_j|^α / max|W_:,j|^(1-α) per input channel j, measured on calibration samples.
The function is unchanged; the activation that INT8 quantizes with one scale per tensor
loses its outlier channels, and the weight, quantized per output channel, absorbs them.
The 1/s is an explicit Mul: in a post-LayerNorm transformer (BERT) the LayerNorm output
also feeds the residual stream, so it cannot be folded into the LayerNorm.

torch artifact → torch artifact (rebuilt by `smoothed` from its parent's source). The
default α is 1.0 (the README's "Measured choices" gives the figures).
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgeopt.core.artifact import Artifact, TorchSource
from edgeopt.core.context import StageContext
from edgeopt.core.errors import DataError, RecipeError


class SmoothActivationsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(
        1.0, ge=0, le=1, description="migration strength: 0 leaves the activations, 1 moves all their range"
    )
    layers: str = Field("", description="regular expression on module names (default: every nn.Linear)")
    samples: int = Field(128, ge=1, description="calibration samples whose activation maxima set the scales")
    batch_size: int = Field(32, ge=1, description="samples per forward pass while measuring")


def smooth_activations(artifact: Artifact, options: SmoothActivationsOptions, context: StageContext) -> Artifact:
    import torch

    from edgeopt.core.torch_artifact import factory_source, load_module, save_derived

    if context.calibration is None:
        raise DataError("smooth_activations needs calibration samples (a dataset with real inputs)")
    parent = factory_source(artifact, "smooth_activations")
    module = load_module(artifact)
    pattern = re.compile(options.layers)
    chosen = [name for name, m in module.named_modules() if isinstance(m, torch.nn.Linear) and pattern.search(name)]
    if not chosen:
        raise RecipeError(f"smooth_activations: no nn.Linear module matches layers '{options.layers}'")
    maxima = _activation_maxima(module, chosen, artifact, context.calibration, options)
    for name in chosen:
        linear = module.get_submodule(name)
        weight_max = linear.weight.detach().abs().amax(dim=0).clamp(min=1e-5)
        scale = (maxima[name].clamp(min=1e-5) ** options.alpha / weight_max ** (1 - options.alpha)).clamp(min=1e-5)
        _replace(module, name, _smoothed_class()(linear, scale))
    largest = max(float(maxima[name].max()) for name in chosen)
    median = float(np.median(np.concatenate([maxima[name].numpy() for name in chosen])))
    compression = {
        "method": "smooth_activations",
        "alpha": options.alpha,
        "layers": len(chosen),
        "largest_activation": largest,
        "median_channel_max": median,
        "summary": (
            f"the inputs of {len(chosen)} Linear layers smoothed (alpha {options.alpha}): input channels peak "
            f"at {largest:.1f} against a median channel maximum of {median:.2f}; the weights absorb the scales"
        ),
    }
    source = TorchSource("exporter.smooth:smoothed", {"base": dataclasses.asdict(parent), "layers": chosen})
    return save_derived(
        module,
        artifact,
        source,
        context,
        stage="smooth_activations",
        options=options,
        facts={"compression": compression},
    )


def smoothed(base: dict, layers: list[str]):
    """The parent's module with `layers` wrapped as smoothed Linears (unit scales until the state dict loads)."""
    import torch

    from edgeopt.core.torch_artifact import from_record

    module = from_record(base)
    for name in layers:
        linear = module.get_submodule(name)
        _replace(module, name, _smoothed_class()(linear, torch.ones(linear.in_features)))
    return module


def _activation_maxima(module, chosen: list[str], artifact: Artifact, calibration, options) -> dict:
    import torch

    maxima: dict = {}

    def record(name):
        def hook(_module, inputs, _output):
            x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(dim=0)
            maxima[name] = torch.maximum(maxima[name], x) if name in maxima else x

        return hook

    handles = [module.get_submodule(name).register_forward_hook(record(name)) for name in chosen]
    count = min(options.samples, len(calibration))
    try:
        with torch.inference_mode():
            for start in range(0, count, options.batch_size):
                feeds = calibration.take(start, min(start + options.batch_size, count))
                module(*(torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in artifact.io.inputs))
    finally:
        for handle in handles:
            handle.remove()
    return maxima


def _replace(module, name: str, replacement) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent_name) if parent_name else module, child, replacement)


@functools.cache
def _smoothed_class():
    """Defined on first use: the stage table is imported without torch."""
    import torch

    class Smoothed(torch.nn.Module):
        """x / s, then the Linear with its weight's input channels multiplied by s."""

        def __init__(self, linear: torch.nn.Linear, scale: torch.Tensor):
            super().__init__()
            with torch.no_grad():
                linear.weight.mul_(scale)
            self.linear = linear
            self.register_buffer("inverse_scale", 1.0 / scale)

        def forward(self, x):
            return self.linear(x * self.inverse_scale)

    return Smoothed
