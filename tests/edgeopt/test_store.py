import os
import subprocess
import sys

import pytest

from edgeopt.core.artifact import ARTIFACT_JSON, IO, Artifact, Format, Precision, TensorSpec
from edgeopt.store import Store, stage_key

KEY = "ab" * 32


def _make(content: bytes = b"weights"):
    def make(out_dir):
        path = out_dir / "model.bin"
        path.write_bytes(content)
        io = IO((TensorSpec("x", ("batch", 4), "float32"),), (TensorSpec("y", ("batch", 2), "float32"),))
        return Artifact(path, Format.ONNX, Precision.FP32, "test", {"a": 1}, None, io)

    return make


def test_store_build_then_get_returns_the_same_artifact(tmp_path):
    store = Store(tmp_path)
    built = store.build(KEY, _make())
    again = Store(tmp_path).get(KEY)
    assert again == built
    assert built.path == tmp_path / KEY[:12] / "model.bin"
    assert built.sha256 and built.cache_key == KEY


def test_store_interrupted_build_leaves_nothing_behind(tmp_path):
    store = Store(tmp_path)

    def interrupted(out_dir):
        (out_dir / "model.bin").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.build(KEY, interrupted)
    assert list(tmp_path.iterdir()) == []
    assert store.get(KEY) is None


def test_store_removes_debris_of_a_killed_run(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / f".tmp-{KEY[:12]}-{dead.stdout.strip()}").mkdir()
    (tmp_path / "0123456789ab").mkdir()  # renamed into place but never completed
    (tmp_path / "notes").mkdir()  # not ours: left alone
    (tmp_path / "report.md").write_text("kept")
    Store(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "report.md"]


def test_store_keeps_the_temporary_directory_of_a_live_build(tmp_path):
    live = tmp_path / f".tmp-{KEY[:12]}-{os.getppid()}"
    live.mkdir()
    Store(tmp_path)
    assert live.exists()


def test_store_get_rebuilds_when_the_file_was_altered(tmp_path):
    store = Store(tmp_path)
    built = store.build(KEY, _make())
    built.path.write_bytes(b"tampered")
    assert store.get(KEY) is None
    assert not built.directory.exists()


def test_store_directory_without_artifact_json_is_not_an_artifact(tmp_path):
    store = Store(tmp_path)
    built = store.build(KEY, _make())
    (built.directory / ARTIFACT_JSON).unlink()
    assert store.get(KEY) is None


def test_stage_key_changes_with_each_ingredient():
    base = stage_key("p", "export_onnx", 1, {"opset": 18}, "c")
    assert base == stage_key("p", "export_onnx", 1, {"opset": 18}, "c")
    others = [
        stage_key("q", "export_onnx", 1, {"opset": 18}, "c"),
        stage_key("p", "simplify", 1, {"opset": 18}, "c"),
        stage_key("p", "export_onnx", 2, {"opset": 18}, "c"),
        stage_key("p", "export_onnx", 1, {"opset": 17}, "c"),
        stage_key("p", "export_onnx", 1, {"opset": 18}, "d"),
    ]
    assert base not in others and len(set(others)) == len(others)


def test_store_build_of_a_key_built_meanwhile_keeps_the_first(tmp_path):
    """Two attempts at one key (a Ray task retried while its first attempt still runs):
    the second finds the first published and returns it; nothing is replaced."""
    store = Store(tmp_path)

    def meanwhile(out_dir):
        first = Store(tmp_path, sweep=False, built_on="elsewhere").build(KEY, _make(b"first"))
        assert first.facts["built_on"] == "elsewhere"
        return _make(b"second")(out_dir)

    kept = store.build(KEY, meanwhile)
    assert kept.path.read_bytes() == b"first" and kept.facts["built_on"] == "elsewhere"
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY[:12]]


def test_store_records_where_it_built(tmp_path):
    import socket

    assert Store(tmp_path).build(KEY, _make()).facts["built_on"] == socket.gethostname()


def test_store_judges_only_its_own_hosts_temporary_directories(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = dead.stdout.strip()
    import socket

    mine = tmp_path / f".tmp-{KEY[:12]}-{pid}-{socket.gethostname()}"
    theirs = tmp_path / f".tmp-{KEY[:12]}-{pid}-another-host.example"
    old = tmp_path / f".tmp-{'cd' * 6}-{pid}-another-host.example"
    for folder in (mine, theirs, old):
        folder.mkdir()
    os.utime(old, (0, 0))  # untouched for decades: debris wherever it came from
    Store(tmp_path, sweep=False)
    assert mine.exists()
    Store(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [theirs.name]
