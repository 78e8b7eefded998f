"""The artifact cache of one run directory: `<root>/<key[:12]>/{model, artifact.json}`.

A stage writes into a sibling temporary directory that is renamed into place only
when complete, so no reader ever sees half an artifact. A directory without
`artifact.json` is debris from an interrupted run and is removed.

The folder may be shared by several machines (Ray workers building at once), and the
same key may be built twice (a task retried while its first attempt still runs): a
build publishes only where no artifact is yet, and a finished one is never replaced.
Temporary directories are named by host and pid; only the driver of a run sweeps them,
and it judges a pid only on its own host.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from edgeopt.core.artifact import ARTIFACT_JSON, Artifact, canonical_sha256, directory_sha256
from edgeopt.core.errors import output_error

log = logging.getLogger(__name__)

# errno values that mean "this folder cannot take the write", not a bug of ours
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENOTDIR}
_KEY_DIR = re.compile(r"^[0-9a-f]{12}$")
# .tmp-<key12>-<pid>.<attempt>-<host>; older runs wrote neither attempt nor host (then it was this one)
_TMP_DIR = re.compile(r"^\.tmp-[0-9a-f]{12}-(\d+)(?:\.[0-9a-f]+)?(?:-(.+))?$")
# another host's temporary directory untouched this long is debris (its pid cannot be judged here)
_FOREIGN_DEBRIS_S = 24 * 3600


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
    """`sweep`: remove debris of killed builds (the driver does; a Ray task must not).
    `built_on`: where builds run, recorded in each new artifact's facts."""

    def __init__(self, root: Path, sweep: bool = True, built_on: str | None = None):
        self.root = root
        self.built_on = built_on or socket.gethostname()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise output_error(root, err) from err
        if sweep:
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

    def discard(self, key: str) -> None:
        """Remove the artifact under `key` (one that cannot serve here), so it is rebuilt."""
        shutil.rmtree(self.root / key[:12], ignore_errors=True)

    def build(self, key: str, make: Callable[[Path], Artifact]) -> Artifact:
        """Run `make(tmp_dir)`, hash what it wrote, and rename it into place, unless another
        build of the same key got there first: then that one is kept and returned."""
        final = self.root / key[:12]
        tmp = self.root / f".tmp-{key[:12]}-{os.getpid()}.{secrets.token_hex(3)}-{socket.gethostname()}"
        try:
            tmp.mkdir()
            artifact = make(tmp)
            facts = {**artifact.facts, "built_on": self.built_on}
            artifact = dataclasses.replace(artifact, sha256=directory_sha256(tmp), cache_key=key, facts=facts)
            artifact.save()
            published = self._publish(tmp, final, key)
            if published is not None:
                return published
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if err.errno in _WRITE_ERRORS:
                raise output_error(self.root, err) from err
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return artifact.moved_to(final)

    def _publish(self, tmp: Path, final: Path, key: str) -> Artifact | None:
        """Rename `tmp` into place (None), or return the artifact another build of the key
        already published there (and drop ours: same key, same inputs)."""
        for _ in range(2):
            try:
                os.rename(tmp, final)  # atomic; fails where `final` holds anything
                return None
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            existing = self.get(key)  # removes a damaged one, so the second rename can land
            if existing is not None:
                log.debug("%s: built twice; keeping the one published first", final)
                shutil.rmtree(tmp, ignore_errors=True)
                return existing
        raise OSError(errno.EEXIST, f"{final} keeps appearing half-built", str(final))

    def _remove_debris(self) -> None:
        host = socket.gethostname()
        for entry in self.root.iterdir():
            if not entry.is_dir():
                continue
            tmp = _TMP_DIR.match(entry.name)
            if tmp and _is_debris(entry, int(tmp.group(1)), tmp.group(2) or host, host):
                shutil.rmtree(entry, ignore_errors=True)
            elif _KEY_DIR.match(entry.name) and not (entry / ARTIFACT_JSON).is_file():
                log.debug("removing incomplete artifact directory %s", entry)
                shutil.rmtree(entry, ignore_errors=True)


def _is_debris(entry: Path, pid: int, its_host: str, host: str) -> bool:
    if its_host == host:
        return not _process_alive(pid)
    try:
        return time.time() - entry.stat().st_mtime > _FOREIGN_DEBRIS_S
    except OSError:
        return False


def _process_alive(pid: int) -> bool:
    """Whether `pid` is a running process here (a zombie, killed but not yet reaped, is not)."""
    if pid == os.getpid():
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
