"""The `devices:` schema: machines reached over SSH that measure a run's artifacts.

    devices:
      edge-box: {ssh: user@host, python: /opt/venv/bin/python, threads: [1, 4],
                 timeouts: {connect: 10, round: 60}, host_key: SHA256:…}

`local` names this machine and needs no entry.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from bench.device_client import DEFAULT_WORKDIR

LOCAL = "local"
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_PINNED = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}=?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceTimeouts(_Strict):
    connect: float = Field(10.0, gt=0, description="seconds to reach the device (TCP connect and SSH banner)")
    round: float = Field(
        60.0, gt=0, description="seconds one interleaved round, or one worker's answer, may take on the device"
    )
    heartbeat: float = Field(
        10.0, ge=2, description="seconds of silence after which the device counts as no longer answering"
    )


class DeviceSpec(_Strict):
    ssh: str = Field(
        description="where: user@host, host, ssh://user@host:port, or a Host of your ~/.ssh/config "
        "(its ProxyJump, agent and known_hosts apply)"
    )
    python: str = Field(
        "python3",
        description="the device's Python 3.11+ with numpy, psutil and its runtimes (onnxruntime): a path, "
        "or a name on its PATH",
    )
    threads: list[PositiveInt] | None = Field(
        None, min_length=1, description="thread counts to time there (default: the recipe's bench.threads)"
    )
    timeouts: DeviceTimeouts = DeviceTimeouts()
    host_key: str | None = Field(
        None,
        description="SHA256:… pins the device's host key; accept-new trusts the key it offers first; "
        "default: only keys already in known_hosts",
    )
    known_hosts: Path | None = Field(None, description="a known_hosts file (default: ssh's own)")
    identity: Path | None = Field(None, description="a private key file (default: ssh's own, or your agent)")
    workdir: str = Field(DEFAULT_WORKDIR, description="the device's cache of shipped code, artifacts and samples")

    @field_validator("ssh", "python", "workdir")
    @classmethod
    def _one_word(cls, value: str) -> str:
        if not value or value.startswith("-") or _CONTROL.search(value):
            raise ValueError(f"'{value}' must be non-empty, not start with '-', and hold no control characters")
        return value

    @field_validator("host_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and value != "accept-new" and not _PINNED.match(value):
            raise ValueError(
                f"'{value}' is neither a SHA256: fingerprint (ssh-keygen -lf KEY.pub prints it) nor accept-new"
            )
        return value
