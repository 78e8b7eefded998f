"""A device's cache of what edgeopt ships to it, run there as `python -c <this file> OP ROOT`.

Standard library only, and self-contained: it runs before edgeopt's own code is on the
device (it is what puts it there). One JSON line answers each call.

    have ROOT       stdin {"entries": {id: {path: [size, sha256]}}} → {"root", "present"}
                    (an entry whose files no longer match is removed, to be sent again)
    receive ROOT    stdin: a header line {"entries": [{"id", "archive", "files": [{"path",
                    "size", "sha256"}]}]}, then each file's bytes in that order →
                    {"received": {id: {path: sha256}}}
    kill ROOT PID   ends the benchmark session PID and its workers, if it holds ROOT's lock
                    → {"killed": bool}

Each entry is written under a temporary name, every file checked by sha256 on arrival,
then renamed into place: an entry is there whole or not at all. An archive entry (the
measuring code) is unpacked beside its archive once the archive's hash checks out.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tarfile

ENTRY = re.compile(r"^[0-9a-f]{64}$")
SESSION_MODULE = b"bench.device_session"
LOCK = "lock"
UNPACKED = "code"


def _safe(path):
    parts = path.split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"unsafe path in a shipment: {path!r}")
    return os.path.join(*parts)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _entries(root):
    path = os.path.join(root, "entries")
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):  # debris of a transfer whose receiver died
        match = re.match(r"^\.tmp-(\d+)-", name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            shutil.rmtree(os.path.join(path, name), ignore_errors=True)
    return path


def have(root, request):
    entries, present = _entries(root), []
    for entry, files in request["entries"].items():
        if not ENTRY.match(entry):
            raise ValueError(f"bad entry id {entry!r}")
        directory = os.path.join(entries, entry)
        if not os.path.isdir(directory):
            continue
        intact = all(
            os.path.isfile(os.path.join(directory, _safe(path)))
            and os.path.getsize(os.path.join(directory, _safe(path))) == size
            and _sha256(os.path.join(directory, _safe(path))) == sha
            for path, (size, sha) in files.items()
        )
        if intact:
            present.append(entry)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return {"root": root, "present": present}


def _copy(stream, size, target):
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        left = size
        while left:
            block = stream.read(min(left, 1 << 20))
            if not block:
                raise ValueError("the transfer ended early")
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def _unpack(archive, directory):
    """The measuring code: regular files with safe names only, nothing else."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                raise ValueError(f"the code archive holds a non-file: {member.name!r}")
            target = os.path.join(directory, _safe(member.name))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with tar.extractfile(member) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)


def _write_entry(stream, entry, temporary):
    hashes = {}
    for item in entry["files"]:
        target = os.path.join(temporary, _safe(item["path"]))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        hashes[item["path"]] = _copy(stream, item["size"], target)
        if hashes[item["path"]] != item["sha256"]:
            raise ValueError(f"{item['path']} arrived damaged (sha256 {hashes[item['path']]})")
    if entry.get("archive"):
        _unpack(os.path.join(temporary, _safe(entry["files"][0]["path"])), os.path.join(temporary, UNPACKED))
    return hashes


def receive(root, stream):
    entries = _entries(root)
    header = json.loads(stream.readline())
    received = {}
    for entry in header["entries"]:
        if not ENTRY.match(entry["id"]):
            raise ValueError(f"bad entry id {entry['id']!r}")
        temporary = os.path.join(entries, f".tmp-{os.getpid()}-{entry['id']}")
        shutil.rmtree(temporary, ignore_errors=True)
        os.makedirs(temporary)
        try:
            hashes = _write_entry(stream, entry, temporary)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)  # nothing half-written stays
            raise
        final = os.path.join(entries, entry["id"])
        try:
            os.rename(temporary, final)
        except OSError:  # another run put the same entry there first
            shutil.rmtree(temporary, ignore_errors=True)
        received[entry["id"]] = hashes
    return {"received": received}


def kill(root, pid):
    """Only the session named in the lock, and only if it is edgeopt's session module."""
    try:
        with open(os.path.join(root, LOCK)) as f:
            holder = json.loads(f.read() or "{}")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (OSError, ValueError):
        return {"killed": False}
    if holder.get("pid") != pid or SESSION_MODULE not in cmdline:
        return {"killed": False}
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)  # the session leads its group: its workers go too
        else:
            os.kill(pid, signal.SIGKILL)
    except OSError:
        return {"killed": False}
    return {"killed": True}


def main(argv):
    operation, root = argv[0], os.path.abspath(os.path.expanduser(argv[1]))
    os.makedirs(root, exist_ok=True)
    try:
        if operation == "have":
            answer = have(root, json.loads(sys.stdin.read()))
        elif operation == "receive":
            answer = receive(root, sys.stdin.buffer)
        elif operation == "kill":
            answer = kill(root, int(argv[2]))
        else:
            answer = {"error": f"unknown operation {operation!r}"}
    except (OSError, ValueError, KeyError, TypeError, tarfile.TarError) as err:
        answer = {"error": f"{type(err).__name__}: {err}"}
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
