"""The measuring code a device runs, as one content-hashed archive.

The code is the session (bench/device_session.py), the fingerprint (bench/device_info.py),
the worker (bench/worker.py), every runtime module the registry names (it imports them by
name) and every module of ours these import, found by reading their import statements, so
the archive follows the code as it changes. The archive is
deterministic (sorted names, no times or owners): the same code gives the same bytes and
the same sha256, which names it in the device's cache.
"""

from __future__ import annotations

import ast
import functools
import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from runtimes import RUNTIMES

ROOT = Path(__file__).resolve().parents[1]
ENTRY_MODULES = ("bench.device_session", "bench.device_info", "bench.worker")
PACKAGES = ("bench", "runtimes", "edgeopt")


@dataclass(frozen=True)
class HarnessArchive:
    data: bytes
    sha256: str
    files: tuple[str, ...]  # paths inside, relative to the repository root


def _module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Our modules that `path` imports, at any depth of the file (lazy imports included)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in [*parts, base] if p)
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in PACKAGES and _module_path(name))
    return found


def closure(entries: tuple[str, ...] = ENTRY_MODULES) -> list[Path]:
    """Every file the entry modules and the runtimes need: themselves, what they import, and
    the packages' __init__ files on the way."""
    seen: set[str] = set()
    todo = [*entries, *sorted({info.module for info in RUNTIMES.values()})]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:depth]) for depth in range(1, len(parts))]
        todo += sorted(_imports(_module_path(module), module) - seen)
    return sorted({_module_path(module) for module in seen})


@functools.cache
def harness_archive() -> HarnessArchive:
    files = closure()
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in files:
            data = path.read_bytes()
            member = tarfile.TarInfo(path.relative_to(ROOT).as_posix())
            member.size, member.mode, member.mtime = len(data), 0o644, 0
            tar.addfile(member, io.BytesIO(data))
    data = buffer.getvalue()
    names = tuple(path.relative_to(ROOT).as_posix() for path in files)
    return HarnessArchive(data, hashlib.sha256(data).hexdigest(), names)
