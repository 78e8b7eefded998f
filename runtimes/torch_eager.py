"""PyTorch eager sessions (CPU and CUDA) for `torch` artifacts.

A torch artifact is rebuilt by edgeopt.core.torch_artifact (its source, then its state
dict, never unpickled objects unless the recipe trusted a pickled model).
"""

from __future__ import annotations

import importlib.util

import numpy as np

from edgeopt.core.artifact import Artifact, Format
from edgeopt.core.errors import RuntimeUnavailable
from edgeopt.core.torch_artifact import load_module, output_tuple
from runtimes.base import Availability, SessionBase, SessionOptions


def probe(device: str) -> Availability:
    if importlib.util.find_spec("torch") is None:
        return Availability(False, "torch: not installed")
    import torch

    if device == "cpu":
        return Availability(True, f"torch {torch.__version__}")
    if torch.version.cuda is None:
        return Availability(False, f"torch {torch.__version__} is built without CUDA")
    if not torch.cuda.is_available():
        return Availability(False, f"torch {torch.__version__}: no CUDA device visible")
    return Availability(True, f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")


class TorchSession(SessionBase):
    def __init__(self, module, io_inputs, io_outputs, device: str, half: bool = False):
        self._module = module
        self._device = device
        self._half = half
        self.inputs = io_inputs
        self.outputs = io_outputs

    def _tensors(self, feeds: dict[str, np.ndarray]) -> list:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feeds[i.name])) for i in self.inputs]
        if self._device != "cpu":
            args = [a.to(self._device, non_blocking=True) for a in args]
        if self._half:
            args = [a.half() if a.is_floating_point() else a for a in args]
        return args

    def _forward(self, args):
        import torch

        with torch.inference_mode():
            return self._module(*args)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self._forward(self._tensors(feeds))
        tensors = output_tuple(result)
        if self._half:
            tensors = [t.float() if t.is_floating_point() else t for t in tensors]
        # .cpu() copies off the GPU; on the CPU the fresh output tensor is ours to hand over
        return {spec.name: t.detach().cpu().numpy() for spec, t in zip(self.outputs, tensors, strict=True)}

    def sync(self) -> None:
        if self._device != "cpu":
            import torch

            torch.cuda.synchronize()

    def close(self) -> None:
        self._module = None
        if self._device != "cpu":
            import torch

            torch.cuda.empty_cache()


class TorchCudaSession(TorchSession):
    """Adds the device-timing calls (runtimes.base.DeviceTimed) on torch's current stream."""

    _prepared: list | None = None

    def prepare(self, feeds: dict[str, np.ndarray]) -> None:
        self._prepared = self._tensors(feeds)
        self.sync()

    def enqueue(self) -> None:
        self._forward(self._prepared)

    def record(self) -> TorchEvent:
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return TorchEvent(event)

    _gate = None

    def hold(self) -> None:
        """The gate of runtimes.cuda on torch's current stream."""
        import torch

        from runtimes.cuda import StreamGate

        if self._gate is None:
            self._gate = StreamGate()
        self._gate.close(torch.cuda.current_stream().cuda_stream)

    def release(self) -> None:
        gate = self._gate
        if gate is not None:
            gate.open()

    def close(self) -> None:
        if self._gate is not None:
            self.sync()  # nothing may still wait on the gate's word
            self._gate.free()
            self._gate = None
        super().close()


class TorchEvent:
    def __init__(self, event):
        self._event = event

    def wait(self) -> None:
        self._event.synchronize()

    def done(self) -> bool:
        return self._event.query()

    def ms_since(self, start: TorchEvent) -> float:
        return start._event.elapsed_time(self._event)


def load(artifact: Artifact, device: str, options: SessionOptions) -> TorchSession:
    if artifact.format is not Format.TORCH:
        raise RuntimeUnavailable(f"torch-{device}: cannot run a {artifact.format} artifact")
    availability = probe(device)
    if not availability.ok:
        raise RuntimeUnavailable(f"torch-{device}: {availability.reason}")
    import torch

    if options.threads is not None:
        torch.set_num_threads(options.threads)
    module = load_module(artifact)
    if device == "cpu":
        if options.half:
            raise RuntimeUnavailable("torch-cpu: FP16 runs on CUDA only here")
        return TorchSession(module, artifact.io.inputs, artifact.io.outputs, device)
    module = module.to(device)
    if options.half:
        module = module.half()
    return TorchCudaSession(module, artifact.io.inputs, artifact.io.outputs, device, options.half)
