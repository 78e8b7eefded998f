"""The legacy model-zoo graphs (legacy_graphs.py), as a module the tests can call."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def legacy():
    spec = importlib.util.spec_from_file_location("legacy_graphs", Path(__file__).with_name("legacy_graphs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
