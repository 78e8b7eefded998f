"""The user-facing error tree. A bug is not an EdgeoptError and keeps its traceback."""

import re


class EdgeoptError(Exception):
    """A problem with the user's input or machine, explained in one line."""


class RecipeError(EdgeoptError):
    """The recipe, or a command-line argument standing in for it, is invalid."""


class DataError(EdgeoptError):
    """Sample data (calibration, evaluation, probe) is missing or does not fit the model."""


class ModelLoadError(EdgeoptError):
    """The model source cannot be loaded: missing file, bad factory, corrupt weights."""


class ExportError(EdgeoptError):
    """Conversion to ONNX failed for a reason the user can act on."""


class VerificationError(EdgeoptError):
    """An artifact's outputs disagree with its reference beyond tolerance."""


class RuntimeUnavailable(EdgeoptError):
    """The runtime asked for cannot run on this machine."""


class BenchmarkError(EdgeoptError):
    """A measurement could not be taken."""


class ClusterError(EdgeoptError):
    """The Ray cluster cannot be reached, lacks what the run needs, or lost a job."""


class OutputError(EdgeoptError):
    """The output folder cannot be written: read-only, full, or not a folder."""


def output_error(path, err: Exception) -> OutputError:
    """One line for a failed write: where, why, and what to do."""
    reason = err.strerror if isinstance(err, OSError) and err.strerror else first_line(err, 80)
    return OutputError(f"{path}: cannot write there ({reason}); free some space or choose another --output")


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first non-empty line of a library's error message, without terminal escapes
    and cut at `limit` characters, for a one-line report."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else type(err).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"
