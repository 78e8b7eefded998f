"""The artifact cache of one run directory: `<root>/<key[:12]>/{model, artifact.json}`.

A stage writes into a sibling temporary directory that is renamed into place only
when complete, so no reader ever sees half an artifact. A directory without
`artifact.json` is debris from an interrupted run and is removed.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from edgeopt.core.artifact import ARTIFACT_JSON, Artifact, canonical_sha256, directory_sha256
from edgeopt.core.errors import output_error

log = logging.getLogger(__name__)

# errno values that mean "this folder cannot take the write", not a bug of ours
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENOTDIR}
_KEY_DIR = re.compile(r"^[0-9a-f]{12}$")
_TMP_DIR = re.compile(r"^\.tmp-[0-9a-f]{12}-(\d+)$")


def stage_key(parent_sha256: str | None, stage: str, version: int, options: dict, context: str) -> str:
    """The cache key: canonical JSON of what decides a stage's output."""
    return canonical_sha256(
        {
            "parent": parent_sha256,
            "stage": stage,
            "version": version,
            "options": options,
            "context": context,
        }
    )


class Store:
    def __init__(self, root: Path):
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise output_error(root, err) from err
        self._remove_debris()

    def get(self, key: str) -> Artifact | None:
        """The artifact built under `key`, if it is complete and its files are intact."""
        directory = self.root / key[:12]
        if not (directory / ARTIFACT_JSON).is_file():
            return None
        try:
            artifact = Artifact.load(directory)
        except (ValueError, KeyError, TypeError):  # a record of an older layout, or damaged
            artifact = None
        if artifact is None or artifact.cache_key != key or directory_sha256(directory) != artifact.sha256:
            log.warning("%s: cached artifact is stale or damaged; rebuilding it", directory)
            shutil.rmtree(directory)
            return None
        return artifact

    def build(self, key: str, make: Callable[[Path], Artifact]) -> Artifact:
        """Run `make(tmp_dir)`, hash what it wrote, and rename it into place."""
        final = self.root / key[:12]
        tmp = self.root / f".tmp-{key[:12]}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            artifact = make(tmp)
            artifact = dataclasses.replace(artifact, sha256=directory_sha256(tmp), cache_key=key)
            artifact.save()
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if err.errno in _WRITE_ERRORS:
                raise output_error(self.root, err) from err
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return artifact.moved_to(final)

    def _remove_debris(self) -> None:
        for entry in self.root.iterdir():
            if not entry.is_dir():
                continue
            tmp = _TMP_DIR.match(entry.name)
            if tmp and not _process_alive(int(tmp.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
            elif _KEY_DIR.match(entry.name) and not (entry / ARTIFACT_JSON).is_file():
                log.debug("removing incomplete artifact directory %s", entry)
                shutil.rmtree(entry, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
