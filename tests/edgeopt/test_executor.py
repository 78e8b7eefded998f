"""The executor without a cluster: Ray stays unimported unless a run names it."""

import subprocess
import sys


def test_executor_ray_is_not_imported_without_one():
    code = "import sys, edgeopt.cli, edgeopt.pipeline, edgeopt.executor; print('ray' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.strip() == "False"
