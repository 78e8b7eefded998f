"""What is shipped to a device: entries of files, each named by the sha256 of its manifest
(every file's path, size and sha256), so the device's cache keeps one copy per content
and a run sends only what the device lacks.

Three kinds: the measuring code (one archive, unpacked there), an artifact's directory,
and the sample arrays a run times and scores (written byte-for-byte the same for the
same arrays, so they are cached like the rest).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.harness_archive import harness_archive
from edgeopt.core.artifact import ARTIFACT_JSON, Artifact, file_sha256


@dataclass(frozen=True)
class ShippedFile:
    path: str  # inside the entry, with /
    size: int
    sha256: str
    source: Path | bytes

    def read(self) -> bytes:
        return self.source if isinstance(self.source, bytes) else self.source.read_bytes()


@dataclass(frozen=True)
class Entry:
    files: tuple[ShippedFile, ...]
    archive: bool = False  # the measuring code: unpacked on arrival

    @property
    def id(self) -> str:
        manifest = [[f.path, f.size, f.sha256] for f in self.files]
        return hashlib.sha256(json.dumps(manifest, separators=(",", ":")).encode()).hexdigest()

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def manifest(self) -> dict:
        return {f.path: [f.size, f.sha256] for f in self.files}

    def header(self) -> dict:
        files = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files]
        return {"id": self.id, "archive": self.archive, "files": files}


def _from_bytes(path: str, data: bytes) -> ShippedFile:
    return ShippedFile(path, len(data), hashlib.sha256(data).hexdigest(), data)


def _from_file(path: str, source: Path) -> ShippedFile:
    return ShippedFile(path, source.stat().st_size, file_sha256(source), source)


def harness_entry() -> Entry:
    archive = harness_archive()
    return Entry((ShippedFile("harness.tar.gz", len(archive.data), archive.sha256, archive.data),), archive=True)


def artifact_entry(artifact: Artifact) -> Entry:
    """The artifact's directory as the store wrote it; a bare model file (`edgeopt bench
    model.onnx`) gets its artifact.json written here, with its external data beside it."""
    directory = artifact.directory
    if (directory / ARTIFACT_JSON).is_file():
        files = [
            _from_file(p.relative_to(directory).as_posix(), p)
            for p in sorted(directory.rglob("*"))
            if p.is_file() and not p.name.startswith(f"{ARTIFACT_JSON}.")
        ]
    else:
        record = json.dumps(artifact.to_json(), indent=2, sort_keys=True).encode()
        data = artifact.path.with_name(artifact.path.name + ".data")
        files = [_from_bytes(ARTIFACT_JSON, record), _from_file(artifact.path.name, artifact.path)]
        files += [_from_file(data.name, data)] if data.is_file() else []
    return Entry(tuple(sorted(files, key=lambda f: f.path)))


def arrays_entry(name: str, arrays: dict[str, np.ndarray]) -> Entry:
    """One .npz of the arrays, the same bytes for the same arrays (np.savez stamps the time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for key in sorted(arrays):
            member = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(member, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.ascontiguousarray(arrays[key]), allow_pickle=False)
    return Entry((_from_bytes(name, buffer.getvalue()),))
