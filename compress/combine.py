"""How an ensemble's members run and how their outputs combine: shared by the stage's
options (no torch) and the module that runs them (compress.models)."""

from enum import StrEnum


class Mode(StrEnum):
    PARALLEL = "parallel"
    CASCADE = "cascade"
    STACKING = "stacking"


class Combine(StrEnum):
    MEAN = "mean"
    WEIGHTED = "weighted"
    VOTE = "vote"
