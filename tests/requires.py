"""The real parts some tests start themselves (Chromium, sshd, network namespaces, a Ray
cluster): where one is missing its tests skip with the reason, except under CI=true, where
.ci/run installs them all and a missing one is a failure, so that CI never passes on tests
that did not run."""

from __future__ import annotations

import os

import pytest


def require(missing: str | None) -> None:
    """`missing`: why the part cannot run here, or None where it can."""
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, but {missing} (CI must not pass on tests that did not run)")
    pytest.skip(missing)
