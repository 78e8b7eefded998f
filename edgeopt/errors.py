"""The user-facing error tree. A bug is not an EdgeoptError and keeps its traceback."""


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


def first_line(err: BaseException) -> str:
    """The first non-empty line of a library's error message, for a one-line report."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
