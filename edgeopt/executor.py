"""Where a run's jobs execute: here, or as Ray tasks (edgeopt/ray_builds.py, ray_devices.py).

A device's measurement is one job, `measure(*args) -> Measured`, named by its device; it
runs here in turn, or on a cluster as a task holding that device's resource, so one device
is measured by one job at a time. Each run records where and when it ran.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from edgeopt.core.errors import ClusterError, EdgeoptError
from edgeopt.core.machine import fingerprint
from edgeopt.measure import Measured

LOCAL = "local"  # the device that is the machine measuring (here, or the node offering device:local)


@dataclass(frozen=True)
class TaskFailure:
    """How a job ended without a result: one line; `input`: the user's input or machine
    (an EdgeoptError), else ours (a bug, with its traceback, or the cluster's)."""

    line: str
    input: bool
    traceback: str | None = None

    def reraise(self, subject: str):
        """End the run with this failure, as if it had happened here."""
        if self.input:
            raise EdgeoptError(f"{subject}: {self.line}")
        if self.traceback:
            raise RuntimeError(f"{subject}: failed on the cluster\n{self.traceback}")
        raise ClusterError(f"{subject}: {self.line}")


@dataclass(frozen=True)
class DeviceJob:
    """One device's measurement: `measure(*args)`, a module-level function (a Ray task
    ships it by reference), run while holding the device."""

    device: str
    measure: Callable[..., Measured]
    args: tuple


@dataclass(frozen=True)
class DeviceRun:
    """A device job's result, where it ran (host, and Ray node), that machine's fingerprint,
    and when it held the device (time.time() at start and end)."""

    device: str
    measured_on: str
    machine: dict
    started: float
    finished: float
    measured: Measured


def run_job(job: DeviceJob, where: str) -> DeviceRun:
    """Run the job; its rows say where they were measured."""
    started = time.time()
    measured = job.measure(*job.args)
    finished = time.time()
    rows = [dataclasses.replace(row, measured_on=where) for row in measured.rows]
    measured = dataclasses.replace(measured, rows=rows)
    return DeviceRun(job.device, where, fingerprint(), started, finished, measured)


def run_here(jobs: list[DeviceJob]) -> list[DeviceRun]:
    """Each job in turn, on this machine."""
    return [run_job(job, socket.gethostname()) for job in jobs]
