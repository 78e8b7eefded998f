"""How steady the machine itself ran during a benchmark: a fixed workload, timed in a
process of its own for one slice per round beside the artifacts, and summarised the way
a measurement is (its spread between even and odd rounds).

On a shared VM the host's other tenants change the guest's speed: on the 2-core VM this
project is developed on, a pure-Python loop fell to 0.37 of its best speed for tenths of
a second at a time while the guest saw its own thread on the CPU throughout. How far the
workload's slow spells lie from its fast ones says whether medians a few percent apart
can be told apart on this machine at all. (Its own even/odd spread understates what
artifacts see: model calls swing more than interpreter work, 0.8% against twins 6.4%
apart in one run here.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.latency import even_odd_spread, time_calls

UNIT_LOOPS = 2000  # about 100 µs of interpreter work: the size of a fast model call
# A median pools whichever slow and fast spells its rounds met. With N rounds landing in
# either at random, the share of slow ones varies by about 1/(2√N), which moves a median by
# up to variation/(2√N): 0.6% at a 10% variation over 60 rounds, well inside a 3% bar;
# 5.6% at the 87% seen on the shared VM this project is developed on.
STEADY_VARIATION = 0.10


def unit_of_work() -> int:
    """The same interpreter work every time, touching no memory beyond a few objects."""
    total = 0
    for index in range(UNIT_LOOPS):
        total += index * index
    return total


class _FixedWork:
    """The unit of work as a session, so the harness's own loop times it like an artifact."""

    def run(self, feeds: dict) -> None:
        unit_of_work()

    def sync(self) -> None:
        pass


def time_units(min_runs: int, min_duration_s: float) -> np.ndarray:
    """Nanoseconds per unit of work, until both the count and the duration are reached."""
    return time_calls(_FixedWork(), [{}], min_runs, min_duration_s)


@dataclass(frozen=True)
class Steadiness:
    """The fixed workload over a benchmark's rounds."""

    slices: int
    slice_p10_us: float  # the slices' medians: how fast the machine ran in its fast spells
    slice_p90_us: float  # ... and in its slow ones
    spread: float  # pooled medians of the even and the odd slices, relative: a row's spread for the machine alone

    @property
    def variation(self) -> float:
        """How much slower the slow spells ran than the fast ones (p90 over p10 of slices)."""
        return self.slice_p90_us / self.slice_p10_us - 1.0

    @classmethod
    def from_slices(cls, slices: list[np.ndarray]) -> Steadiness:
        if len(slices) < 2:
            raise ValueError("steadiness: 2 slices at least, to compare even and odd ones")
        medians = [float(np.median(s)) / 1e3 for s in slices]
        p10, p90 = np.percentile(medians, [10, 90])
        return cls(len(slices), float(p10), float(p90), even_odd_spread(slices))

    def to_json(self) -> dict:
        return {
            "slices": self.slices,
            "slice_p10_us": self.slice_p10_us,
            "slice_p90_us": self.slice_p90_us,
            "variation": self.variation,
            "spread": self.spread,
        }
