"""What a device may answer, as schemas: every line from a device is parsed as JSON of a
bounded size and validated here before anything reads it. A device's reply is data: it is
never executed, unpickled or used as a path here, and its free text is cut to one line.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveInt, ValidationError

from bench.isolated import Collected, Job
from bench.ssh import DeviceFault

Text = Annotated[str, Field(max_length=4000)]
Samples = Annotated[list[NonNegativeInt], Field(min_length=1)]
DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ready(_Strict):
    pid: PositiveInt
    ppid: NonNegativeInt
    python: Text
    host: Text


class Store(_Strict):
    root: Text | None = None
    present: list[str] | None = None
    received: dict[str, dict[str, str]] | None = None
    killed: bool | None = None
    error: Text | None = None


class Fingerprint(BaseModel):
    """edgeopt.core.machine.fingerprint() as the device reports it (fields this edgeopt does
    not know are dropped)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    cpu: Text
    cpu_flags: list[Annotated[str, Field(pattern=r"^[a-z0-9_]{1,40}$")]]
    arch: Text
    target: Text
    target_reason: Text
    logical_cores: PositiveInt | None
    physical_cores: PositiveInt | None
    memory_gb: NonNegativeFloat
    os: Text
    python: Text
    libraries: dict[Text, Text | None]
    gpus: list[Text]
    tensorrt_importable: bool
    pycuda_importable: bool


class Availability(_Strict):
    ok: bool
    reason: Text


class Info(_Strict):
    """bench/device_info.py's answer."""

    python: Text
    version: Text
    root: Text
    disk_free_bytes: NonNegativeInt
    missing: list[Text]
    fingerprint: Fingerprint | None = None
    runtimes: dict[Text, Availability] | None = None


class RoundAnswer(_Strict):
    samples_ns: Samples
    warmup_runs: NonNegativeInt
    device_samples_ns: Samples | None = None


class Rounds(_Strict):
    job: NonNegativeInt
    batch: PositiveInt
    answers: list[RoundAnswer]


class Process(_Strict):
    job: NonNegativeInt
    load_s: NonNegativeFloat
    baseline_rss_bytes: NonNegativeInt
    peak_rss_bytes: NonNegativeInt


class Overhead(_Strict):
    job: NonNegativeInt
    batch: PositiveInt
    ratio: Annotated[float, Field(gt=0)]


class Served(_Strict):
    job: NonNegativeInt
    rate_per_s: Annotated[float, Field(gt=0)]
    samples_ns: Samples


class Output(_Strict):
    name: Text
    dtype: Literal[DTYPES]
    shape: list[NonNegativeInt]
    data: str


class Prediction(_Strict):
    job: NonNegativeInt
    outputs: Annotated[list[Output], Field(min_length=1)]


class Result(_Strict):
    rounds: list[Rounds]
    processes: list[Process]
    overheads: list[Overhead]
    served: list[Served]
    steady: list[Samples]
    predictions: list[Prediction]


class Message(_Strict):
    """One line of a benchmark session: a heartbeat, ready, busy, progress (with `of`), the
    result, or an error with its kind."""

    hb: float | None = None
    ready: Ready | None = None
    busy: Text | None = None
    progress: NonNegativeInt | None = None
    of: NonNegativeInt | None = None
    result: Result | None = None
    error: Text | None = None
    kind: Literal["worker-hung", "worker-crash", "bad-input", "failed"] | None = None


def parse(line: bytes, schema: type[BaseModel], device: str):
    try:
        return schema.model_validate(json.loads(line))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the answer"
        problem = f"{where}: {first['msg']}"
    except ValueError as err:
        problem = f"not JSON ({err})"
    raise DeviceFault(f"device {device}: an answer that is not edgeopt's: {one_line(problem)}", "bad-reply", False)


def one_line(text: str, limit: int = 300) -> str:
    """A device's free text as one printable line."""
    line = re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def to_collected(result: Result, jobs: list[Job], rounds: int, device: str) -> Collected:
    """The raw answers keyed by the host's jobs, checked to be complete: every job's every
    batch with all its rounds, every process, and outputs that decode to their shapes."""

    def job(index: int) -> Job:
        if index >= len(jobs):
            raise DeviceFault(f"device {device}: an answer for job {index} of {len(jobs)}", "bad-reply", False)
        return jobs[index]

    timed = {(job(r.job), r.batch): [a.model_dump(exclude_none=True) for a in r.answers] for r in result.rounds}
    expected = {(j, b) for j in jobs for b in j.batches}
    short = [k for k in expected if len(timed.get(k, [])) != rounds]
    if set(timed) != expected or short or {p.job for p in result.processes} != set(range(len(jobs))):
        raise DeviceFault(f"device {device}: an incomplete answer (not every round of every job)", "bad-reply", False)
    return Collected(
        rounds=timed,
        processes={job(p.job): p.model_dump(exclude={"job"}) for p in result.processes},
        overheads={(job(o.job), o.batch): o.ratio for o in result.overheads},
        served={job(s.job): (s.rate_per_s, s.samples_ns) for s in result.served},
        steady=[list(s) for s in result.steady],
        predictions={job(p.job): [o.model_dump() for o in p.outputs] for p in result.predictions},
    )


def decode_outputs(outputs: list[dict], device: str) -> dict[str, np.ndarray]:
    """A device's outputs as arrays: raw bytes of a listed dtype, exactly the size of their shape."""
    arrays = {}
    for output in outputs:
        try:
            data = base64.b64decode(output["data"], validate=True)
        except (binascii.Error, ValueError) as err:
            raise DeviceFault(
                f"device {device}: output {one_line(output['name'])} is not base64", "bad-reply", False
            ) from err
        dtype = np.dtype(output["dtype"])
        if len(data) != math.prod(output["shape"]) * dtype.itemsize:
            raise DeviceFault(
                f"device {device}: output {one_line(output['name'])} does not fill its shape", "bad-reply", False
            )
        arrays[output["name"]] = np.frombuffer(data, dtype).reshape(output["shape"])
    return arrays
