"""The Artifact record that travels from stage to stage, and its JSON form on disk.

An artifact is one model file (plus any external data) in a directory of its own,
described by `artifact.json` beside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

ARTIFACT_JSON = "artifact.json"
# artifact.json's layout; a record of another version is rebuilt, not read
# (3: a torch source's whole-model file is `file`, `file_kind`, `file_sha256`)
RECORD_VERSION = 3


class Format(StrEnum):
    TORCH = "torch"
    ONNX = "onnx"
    TRT_ENGINE = "trt-engine"
    OPENVINO = "openvino"  # OpenVINO IR: model.xml and its weights, model.bin, beside it


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8_QDQ = "int8-qdq"
    INT8_DYNAMIC = "int8-dynamic"
    # weights stored in BF16 (convert_bf16), and a runtime's float layers computed in BF16
    # (ov-cpu-bf16)
    BF16 = "bf16"


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: symbolic dims are strings, dtype is a numpy dtype name."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(data["name"], tuple(data["shape"]), data["dtype"])


@dataclass(frozen=True)
class IO:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IO:
        return cls(
            tuple(TensorSpec.from_json(t) for t in data["inputs"]),
            tuple(TensorSpec.from_json(t) for t in data["outputs"]),
        )


@dataclass(frozen=True)
class OutputCheck:
    """One output compared with the reference over the probe samples."""

    name: str
    max_abs: float
    max_rel: float
    cosine_min: float
    passed: bool


@dataclass(frozen=True)
class Verification:
    reference: str
    samples: int
    atol: float
    rtol: float
    min_cosine: float
    outputs: tuple[OutputCheck, ...]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def worst(self) -> OutputCheck:
        return max(self.outputs, key=lambda o: o.max_abs)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verification:
        fields = {k: v for k, v in data.items() if k not in ("outputs", "passed")}
        return cls(**fields, outputs=tuple(OutputCheck(**o) for o in data["outputs"]))


class ModelFile(StrEnum):
    """A whole torch model in one file, rebuilt without a factory. What loading runs:
    pickle (torch.save(module)): Python code from the file, so only when the recipe trusts it;
    torchscript (torch.jit.save): the archive's TorchScript code, in TorchScript's interpreter;
    exported (torch.export.save, .pt2): nothing, a graph of torch operators is deserialized."""

    PICKLE = "pickle"
    TORCHSCRIPT = "torchscript"
    EXPORTED = "exported"


@dataclass(frozen=True)
class TorchSource:
    """How a torch artifact's module is rebuilt: `factory` (package.module:function, looked
    up in `search_dir` first) called with `kwargs`, then the saved state dict; or a whole
    model `file` of `file_kind`, re-read only while its sha256 still matches."""

    factory: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    search_dir: str | None = None
    file: str | None = None
    file_kind: ModelFile | None = None
    file_sha256: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TorchSource:
        kind = data.get("file_kind")
        return cls(**{**data, "file_kind": ModelFile(kind) if kind else None})


@dataclass(frozen=True)
class Artifact:
    """A built model and what later stages, runtimes and the report read of it.

    parent: the sha256 of the artifact it was made from.
    target: the machine it was built for, where that shaped it (INT8).
    source: how a torch artifact's module is rebuilt.
    modules: ONNX node name → the PyTorch module it came from, where the export said.
    not_for: runtime id → why this artifact is not measured there.
    engine: a TensorRT engine's build record (runtimes.tensorrt_settings.EngineMeta as JSON).
    cache_key: the key the store built it under.
    facts: figures for the report (sizes, node counts, what a stage did); nothing reads
    them to decide anything.
    """

    path: Path
    format: Format
    precision: Precision
    stage: str
    options: dict[str, Any]
    parent: str | None
    io: IO
    sha256: str = ""
    verification: Verification | None = None
    target: str | None = None
    source: TorchSource | None = None
    modules: dict[str, str] = field(default_factory=dict)
    not_for: dict[str, str] = field(default_factory=dict)
    engine: dict[str, Any] | None = None
    cache_key: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.path.parent

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["record_version"] = RECORD_VERSION
        data["path"] = self.path.name
        data["format"] = str(self.format)
        data["precision"] = str(self.precision)
        if self.verification is not None:
            data["verification"]["passed"] = self.verification.passed
        return data

    def save(self) -> None:
        """Write artifact.json beside the model file; it marks the directory complete."""
        text = json.dumps(self.to_json(), indent=2, sort_keys=True)
        tmp = self.directory / (ARTIFACT_JSON + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(self.directory / ARTIFACT_JSON)

    @classmethod
    def load(cls, directory: Path) -> Artifact:
        """The artifact recorded in `directory`; ValueError for a record of another layout."""
        data = json.loads((directory / ARTIFACT_JSON).read_text())
        if data.get("record_version") != RECORD_VERSION:
            raise ValueError(f"{directory / ARTIFACT_JSON}: record version {data.get('record_version')}")
        verification, source = data["verification"], data["source"]
        return cls(
            path=directory / data["path"],
            format=Format(data["format"]),
            precision=Precision(data["precision"]),
            stage=data["stage"],
            options=data["options"],
            parent=data["parent"],
            io=IO.from_json(data["io"]),
            sha256=data["sha256"],
            verification=Verification.from_json(verification) if verification else None,
            target=data["target"],
            source=TorchSource.from_json(source) if source else None,
            modules=data["modules"],
            not_for=data["not_for"],
            engine=data["engine"],
            cache_key=data["cache_key"],
            facts=data["facts"],
        )

    def moved_to(self, directory: Path) -> Artifact:
        return dataclasses.replace(self, path=directory / self.path.name)


def directory_sha256(directory: Path) -> str:
    """Hash every file of an artifact directory (model and external data), not its JSON."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if path.name in (ARTIFACT_JSON, ARTIFACT_JSON + ".tmp"):
            continue
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def canonical_sha256(value: Any) -> str:
    """sha256 of canonical JSON: the cache key of a stage run."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
