"""A measuring process of its own: `python -m bench.worker`, driven over stdin/stdout.

Each (artifact, runtime, threads) gets a fresh process, so no measurement inherits
another's caches, allocator state or thread pools, and the thread settings are fixed
before any library starts its pools (and glibc's allocator thresholds once the artifact is
loaded: `_pin_allocator`). The process lives for the whole benchmark, so
the parent can interleave short rounds across every artifact: drift on a shared machine
then lands on all of them alike. One JSON request per line in, one answer per line out:

    {"load": {...}}                  → {"load_s", "baseline_rss_bytes"}
    {"warm": {"batch"}}              → {"warmup_runs"}  (untimed runs until stable)
    {"time": {"batch", "min_runs", "min_duration_s"}} → {"samples_ns", "warmup_runs"}
        (after a short re-warm; GPU sessions add "device_samples_ns", a launch queued
        behind a held stream, between CUDA events, where the stream can be held)
    {"overhead": {"batch"}}          → {"ratio"}
    {"steady": {"min_runs", "min_duration_s"}} → {"samples_ns"}
        (the fixed workload of bench/steadiness.py: how fast the machine itself ran;
        needs no load)
    {"serve": {"rate_per_s", "requests", "concurrency"}} → {"samples_ns"}
    {"predict": {"test", "batch_size"}} → {"outputs": [{"name", "dtype", "shape", "data"}]}
        (every output over the inputs in the .npz `test`, base64 of the raw array bytes:
        a device's accuracy, scored where its answer arrives)
    {"finish": {}}                   → {"peak_rss_bytes"}, then exit

A thread owns stdin: when the parent goes (its end of the pipe closes), the process exits
at once, even in the middle of a long request, so a worker never outlives its parent.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import sys
import threading
import time

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def main() -> int:
    state: dict = {}
    requests: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_requests, args=(requests,), daemon=True).start()
    while True:
        (verb, request), *_ = json.loads(requests.get()).items()
        try:
            answer = HANDLERS[verb](state, request)
        except Exception as err:  # reported to the parent, which raises it as its own kind
            from edgeopt.core.errors import EdgeoptError, first_line

            answer = {"error": first_line(err), "bad_input": isinstance(err, EdgeoptError)}
        _quiesce()
        print(json.dumps(answer), flush=True)
        if verb == "finish" or "error" in answer:
            return 0


def _read_requests(requests: queue.Queue) -> None:
    for line in sys.stdin:
        requests.put(line)
    os._exit(0)  # the parent is gone or done: nothing is left to answer


def _load(state: dict, request: dict) -> dict:
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(request["threads"])
    from pathlib import Path

    import numpy as np
    import psutil

    from bench.latency import LatencySettings
    from edgeopt.core.artifact import Artifact
    from runtimes import load
    from runtimes.base import SessionOptions

    if request["runtime"].startswith("torch"):
        import torch

        torch.set_num_threads(request["threads"])
        torch.set_num_interop_threads(1)
    baseline_rss = psutil.Process().memory_info().rss
    stacked: dict[int, dict] = {}
    with np.load(request["feeds"], allow_pickle=False) as archive:
        for key in archive.files:  # b<batch>__<input name>: that batch size's batches, one after another
            batch, name = key.split("__", 1)
            stacked.setdefault(int(batch[1:]), {})[name] = archive[key]
    feeds = {
        size: [{name: array[start : start + size] for name, array in arrays.items()}
               for start in range(0, len(next(iter(arrays.values()))), size)]
        for size, arrays in stacked.items()
    }  # fmt: skip
    state["feeds"] = feeds
    state["next_batch"] = dict.fromkeys(feeds, 0)
    artifact = Artifact.load(Path(request["artifact_dir"]))
    # runtimes that build for a range of shapes (ONNX Runtime's TensorRT provider) build
    # once for every batch this process will time
    options = SessionOptions(threads=request["threads"], profile=_profile(feeds))
    began = time.perf_counter()
    state["session"] = load(request["runtime"], artifact, options)
    load_s = time.perf_counter() - began
    state["settings"] = LatencySettings(**request["settings"])
    _pin_allocator()
    return {"load_s": load_s, "baseline_rss_bytes": baseline_rss}


# glibc's mallopt parameters, and the ceiling glibc's own dynamic mmap threshold rises to (64-bit)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_CEILING = 32 * 2**20
TRIM_THRESHOLD_PINNED = 2**31 - 1


def _pin_allocator() -> None:
    """Fix glibc malloc's thresholds for the timed calls. Left dynamic, they follow what the
    process happened to free while loading, and in some processes a call's freed buffers
    hand the top of the heap back to the system, to be faulted in again by the next call:
    eager PyTorch on the bench recipe's ResNet took 0 page faults per call in some fresh
    processes and 100 to 550 in others (a median up to 25% slower), by the draw. With the
    mmap threshold at glibc's ceiling and no trimming, every process keeps its heap (the
    cost: ResNet's eager PyTorch peaked 10% higher). Elsewhere than glibc it does nothing."""
    import ctypes
    import platform

    if platform.libc_ver()[0] == "glibc":
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_CEILING)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_PINNED)


def _profile(feeds: dict[int, list]) -> dict:
    """min/opt/max shape per input over the batch sizes: opt and max the largest."""
    profile = {}
    for name in next(iter(feeds.values()), [{}])[0]:
        shapes = [batches[0][name].shape for batches in feeds.values()]
        low = tuple(min(sizes) for sizes in zip(*shapes, strict=True))
        high = tuple(max(sizes) for sizes in zip(*shapes, strict=True))
        profile[name] = (low, high, high)
    return profile


def _feeds(state: dict, batch: int) -> list[dict]:
    names = [spec.name for spec in state["session"].inputs]
    return [{name: feeds[name] for name in names} for feeds in state["feeds"][batch]]


def _warm(state: dict, request: dict) -> dict:
    from bench.latency import warm_up

    return {"warmup_runs": warm_up(state["session"], _feeds(state, request["batch"]), state["settings"])}


def _time(state: dict, request: dict) -> dict:
    from bench.latency import REWARM_RUNS, REWARM_S, DeviceTimingUnavailable, time_calls, time_device_calls
    from runtimes.base import DeviceTimed

    session, feeds = state["session"], _feeds(state, request["batch"])
    # caches and thread pools went cold while the other processes ran
    warmup = len(time_calls(session, feeds, REWARM_RUNS, min(REWARM_S, request["min_duration_s"])))
    first = state["next_batch"][request["batch"]]
    samples = time_calls(session, feeds, request["min_runs"], request["min_duration_s"], first)
    state["next_batch"][request["batch"]] = first + len(samples)
    answer = {"samples_ns": samples.tolist(), "warmup_runs": warmup}
    if isinstance(session, DeviceTimed) and "no_device_time" not in state:
        try:
            device = time_device_calls(session, feeds, request["min_runs"], request["min_duration_s"])
        except DeviceTimingUnavailable as err:  # the end-to-end time stands; device time is left out
            state["no_device_time"] = str(err)
            print(f"device time not taken: {err}", file=sys.stderr)
        else:
            answer["device_samples_ns"] = device.tolist()
    return answer


QUIESCE_POLL_S = 0.0005
QUIESCE_MAX_S = 0.5


def _quiesce() -> None:
    """Wait, before answering, until this process's other threads are all asleep: thread
    pools spin for a while after the last call (ONNX Runtime's for 2^20 pauses, about
    55 ms here; torch's OpenMP pool about 9 ms), and on a small machine that spinning
    would slow whichever process the parent asks next (3× at 2 threads on 2 cores).
    Reads each thread's state from /proc (Linux); elsewhere it returns at once."""
    deadline = time.perf_counter() + QUIESCE_MAX_S
    while _other_threads_running() and time.perf_counter() < deadline:
        time.sleep(QUIESCE_POLL_S)


def _other_threads_running() -> bool:
    own = str(threading.get_native_id())
    try:
        for tid in os.listdir("/proc/self/task"):
            if tid != own:
                with open(f"/proc/self/task/{tid}/stat") as stat:
                    if stat.read().rpartition(")")[2].split()[0] == "R":
                        return True
    except (OSError, IndexError):
        return False
    return False


def _overhead(state: dict, request: dict) -> dict:
    from bench.latency import harness_overhead

    return {"ratio": harness_overhead(state["session"], _feeds(state, request["batch"]))}


def _steady(state: dict, request: dict) -> dict:
    from bench.steadiness import time_units

    return {"samples_ns": time_units(request["min_runs"], request["min_duration_s"]).tolist()}


def _serve(state: dict, request: dict) -> dict:
    from bench.latency import serve

    latencies = serve(state["session"], _feeds(state, 1), **request)
    return {"samples_ns": latencies.tolist()}


def _predict(state: dict, request: dict) -> dict:
    import base64

    import numpy as np

    session, size = state["session"], request["batch_size"]
    with np.load(request["test"], allow_pickle=False) as archive:
        inputs = {spec.name: archive[spec.name] for spec in session.inputs}
    count = len(next(iter(inputs.values())))
    chunks: dict[str, list] = {}
    for start in range(0, count, size):
        for name, value in session.run({k: v[start : start + size] for k, v in inputs.items()}).items():
            chunks.setdefault(name, []).append(value)
    outputs = []
    for name, values in chunks.items():
        array = np.ascontiguousarray(np.concatenate(values))
        data = base64.b64encode(array.tobytes()).decode()
        outputs.append({"name": name, "dtype": array.dtype.name, "shape": list(array.shape), "data": data})
    return {"outputs": outputs}


def _finish(state: dict, request: dict) -> dict:
    if "session" in state:
        state["session"].close()
    return {"peak_rss_bytes": _peak_rss_bytes()}


def _peak_rss_bytes() -> int:
    """This process's own peak. Linux's ru_maxrss survives fork and exec, so a worker
    started by a large parent would report the parent's peak; VmHWM belongs to the
    process's own address space."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


HANDLERS = {
    "load": _load,
    "warm": _warm,
    "time": _time,
    "overhead": _overhead,
    "steady": _steady,
    "serve": _serve,
    "predict": _predict,
    "finish": _finish,
}

if __name__ == "__main__":
    sys.exit(main())
