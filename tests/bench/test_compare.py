"""`edgeopt compare` on two real runs of a small recipe, one of them edited where a
change is wanted."""

import copy
import json
import shutil

import numpy as np
import pytest

from bench.compare import compare
from edgeopt.cli import main
from tests.conftest import FACTORIES, MLP_RECIPE


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, digits):
    """One real run of the small factory recipe the CLI tests use."""
    folder = tmp_path_factory.mktemp("compare")
    shutil.copy(FACTORIES, folder / "factories.py")
    np.savez(folder / "digits.npz", image=digits.test.inputs["image"][:64], labels=digits.test.labels[:64])
    (folder / "recipe.yaml").write_text(MLP_RECIPE)
    assert main(["run", str(folder / "recipe.yaml"), "--output", str(folder / "run")]) == 0
    return folder / "run"


def _scaled(document: dict, variant: str, factor: float) -> dict:
    """The same run with one variant's latencies (and their intervals) scaled."""
    edited = copy.deepcopy(document)
    for row in edited["rows"]:
        if row["variant"] == variant:
            latency = row["latency"]
            latency["p50_ms"] *= factor
            latency["p50_ci_ms"] = [bound * factor for bound in latency["p50_ci_ms"]]
    return edited


def test_a_run_against_itself_has_no_change(run_dir):
    document = json.loads((run_dir / "results.json").read_text())
    result = compare(document, document)
    assert result.changes and all(c.verdict == "within noise" for c in result.changes)
    assert result.same_machine and not result.only_before and not result.only_after


def test_changes_beyond_the_interval_and_threshold_are_named(run_dir):
    document = json.loads((run_dir / "results.json").read_text())
    verdicts = {c.key[1]: c.verdict for c in compare(document, _scaled(document, "onnx", 0.25)).changes}
    assert verdicts == {"model": "within noise", "onnx": "faster"}
    verdicts = {c.key[1]: c.verdict for c in compare(document, _scaled(document, "model", 4.0)).changes}
    assert verdicts == {"model": "slower", "onnx": "within noise"}
    # a 1% move is below the 2% threshold however tight the intervals
    tight = copy.deepcopy(document)
    for row in tight["rows"]:
        row["latency"]["p50_ci_ms"] = [row["latency"]["p50_ms"]] * 2
    assert {c.verdict for c in compare(tight, _scaled(tight, "onnx", 0.99)).changes} == {"within noise"}


def test_compare_keys_rows_by_device_and_reads_older_runs_as_local(run_dir):
    document = json.loads((run_dir / "results.json").read_text())
    remote = copy.deepcopy(document)
    for row in remote["rows"]:
        row["device"] = "edge-box"
    result = compare(document, remote)
    assert not result.changes  # one device's numbers are never set against another's
    assert {key[0] for key in result.only_before} == {"local"} and {key[0] for key in result.only_after} == {"edge-box"}
    older = copy.deepcopy(document)
    older["schema_version"] = 6
    del older["devices"]
    for row in older["rows"]:
        del row["device"]
    assert {c.key[0] for c in compare(older, document).changes} == {"local"}


def test_compare_command_prints_the_verdicts(run_dir, tmp_path, capsys):
    faster = tmp_path / "faster"
    faster.mkdir()
    document = json.loads((run_dir / "results.json").read_text())
    (faster / "results.json").write_text(json.dumps(_scaled(document, "onnx", 0.25)))
    assert main(["compare", str(run_dir), str(faster)]) == 0
    out = capsys.readouterr().out
    assert "faster" in out and "2 faster, 0 slower, 2 within noise" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no results.json there"),
        ("{not json", "not a readable results.json"),
        ('{"schema_version": 1}', "results schema 1, this edgeopt reads 3 to 7"),
    ],
)
def test_compare_refuses_what_it_cannot_read_in_one_line(run_dir, tmp_path, capsys, content, message):
    other = tmp_path / "other"
    other.mkdir()
    if content is not None:
        (other / "results.json").write_text(content)
    assert main(["compare", str(run_dir), str(other)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err.strip().splitlines()[-1]
