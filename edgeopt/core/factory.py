"""Resolving `package.module:function` references to model factories."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from edgeopt.core.errors import ModelLoadError, first_line


def resolve_factory(reference: str, search_dir: Path | None = None) -> Callable:
    """Import `package.module:function`, looking in `search_dir` first (the recipe's folder)."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ModelLoadError(f"factory '{reference}' is not of the form package.module:function")
    added = search_dir is not None and str(search_dir) not in sys.path
    if added:
        sys.path.insert(0, str(search_dir))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ModelLoadError(f"factory '{reference}': cannot import module {module_name}: {first_line(err)}") from err
    except Exception as err:  # the module's own code failed while importing (SyntaxError, NameError, ...)
        raise ModelLoadError(
            f"factory '{reference}': importing module {module_name} failed: {type(err).__name__}: {first_line(err)}"
        ) from err
    finally:
        if added:
            sys.path.remove(str(search_dir))
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ModelLoadError(f"factory '{reference}': {module_name} has no callable {attribute}")
    return factory
