"""A benchmark session on a device: `python -m bench.device_session ROOT HEARTBEAT_S IDLE_S`,
started over SSH from the shipped code, talking JSON lines on stdin/stdout.

It takes the device's lock (two runs never benchmark one device at once), says
{"ready": {...}}, reads one {"measure": {...}} request, runs the same isolated,
interleaved harness as a local run (bench.isolated.collect, timing on this device), says
{"progress": k} after every round and {"result": {...}} (the workers' raw answers) at the
end, or {"error", "kind"}. A thread says {"hb": t} every HEARTBEAT_S meanwhile, so the
host can tell a device that stopped answering from a slow round.

It never outlives its client: stdin closing (the host or the link gone), its parent
(sshd) changing, or no {"ping"} for IDLE_S (a link that dropped silently) ends it and
its workers at once. It writes nothing on the device but the lock file's holder line.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path

_output = threading.Lock()
_last_input = [time.monotonic()]


def send(message: dict) -> None:
    line = json.dumps(message, separators=(",", ":")) + "\n"
    try:
        with _output:
            sys.stdout.write(line)
            sys.stdout.flush()
    except (OSError, ValueError):
        die("stdout closed")


def die(why: str) -> None:
    """End this session and its workers now. A session leads its process group (sshd made
    it a session leader); elsewhere (a test) only its own children are ended."""
    try:
        if os.getpgid(0) == os.getpid():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.killpg(0, signal.SIGTERM)
        else:
            for pid in _children():
                os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    try:  # never blocking: stderr may be a full pipe to a stopped sshd
        os.set_blocking(2, False)
        os.write(2, f"device session: exiting ({why})\n".encode())
    except OSError:
        pass
    os._exit(3)


def _children() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if entry.isdigit() and int(stat.read().rpartition(")")[2].split()[1]) == os.getpid():
                    found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _read(requests: queue.Queue) -> None:
    for line in sys.stdin:
        _last_input[0] = time.monotonic()
        if line.strip() and json.loads(line) != {"ping": {}}:
            requests.put(json.loads(line))
    die("stdin closed")


def _watch(parent: int, idle_s: float) -> None:
    """Never writes: a blocked stdout must not stop it."""
    while True:
        if os.getppid() != parent:
            die(f"parent {parent} gone")
        if time.monotonic() - _last_input[0] > idle_s:
            die(f"no word from the host for {idle_s:g} s")
        time.sleep(0.2)


def _beat(interval_s: float) -> None:
    while True:
        send({"hb": round(time.monotonic(), 3)})
        time.sleep(interval_s)


def _lock(root: Path):
    """The device's lock, held until this process ends (however it ends); None if taken."""
    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / "lock", "a+")  # noqa: SIM115 held for the process's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        send({"busy": handle.read(500).strip()})
        return None
    holder = {"pid": os.getpid(), "client": os.environ.get("SSH_CLIENT", "").split(" ")[0], "since": time.time()}
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(holder) + "\n")
    handle.flush()
    return handle


def main(argv: list[str]) -> int:
    root, heartbeat_s, idle_s = Path(argv[0]), float(argv[1]), float(argv[2])
    requests: queue.Queue = queue.Queue()
    threading.Thread(target=_read, args=(requests,), daemon=True).start()
    threading.Thread(target=_watch, args=(os.getppid(), idle_s), daemon=True).start()
    lock = _lock(root)
    if lock is None:
        return 0
    info = {"pid": os.getpid(), "ppid": os.getppid(), "python": sys.executable, "host": socket.gethostname()}
    send({"ready": info})
    threading.Thread(target=_beat, args=(heartbeat_s,), daemon=True).start()
    request = requests.get()
    try:
        send({"result": measure(root, request["measure"])})
    except Exception as err:  # the host records it as this device's fault
        send({"error": _first_line(err), "kind": _kind(err)})
    return 0


def measure(root: Path, request: dict) -> dict:
    from bench.isolated import Job, ServerSettings, collect, rounds_total
    from bench.latency import LatencySettings

    entries = root / "entries"
    jobs = [
        Job(j["variant"], j["runtime"], j["threads"], entries / j["artifact"], tuple(j["batches"]))
        for j in request["jobs"]
    ]
    predict = {jobs[p["job"]]: (entries.joinpath(*p["test"]), p["batch_size"]) for p in request["predict"]}
    total, done = rounds_total(jobs, request["rounds"]), [0]

    def progress() -> None:
        done[0] += 1
        send({"progress": done[0], "of": total})

    collected = collect(
        jobs,
        entries.joinpath(*request["feeds"]),
        LatencySettings(**request["settings"]),
        request["rounds"],
        request["overhead"],
        ServerSettings(**request["server"]) if request["server"] else None,
        on_done=progress,
        timeout_s=request["round_timeout_s"],
        predict=predict,
    )
    index = {job: position for position, job in enumerate(jobs)}
    return {
        "rounds": [{"job": index[j], "batch": b, "answers": a} for (j, b), a in collected.rounds.items()],
        "processes": [{"job": index[j], **answer} for j, answer in collected.processes.items()],
        "overheads": [{"job": index[j], "batch": b, "ratio": r} for (j, b), r in collected.overheads.items()],
        "served": [{"job": index[j], "rate_per_s": r, "samples_ns": s} for j, (r, s) in collected.served.items()],
        "steady": collected.steady,
        "predictions": [{"job": index[j], "outputs": o} for j, o in collected.predictions.items()],
    }


def _kind(err: Exception) -> str:
    from bench.isolated import WorkerExited, WorkerHung
    from edgeopt.core.errors import EdgeoptError

    if isinstance(err, WorkerHung):
        return "worker-hung"
    if isinstance(err, WorkerExited):
        return "worker-crash"
    if isinstance(err, EdgeoptError):
        return "bad-input"
    return "failed"


def _first_line(err: Exception) -> str:
    from edgeopt.core.errors import first_line

    return first_line(err, 300)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
