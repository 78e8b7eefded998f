"""The machine's own steadiness: a fixed workload, summarised like a measurement."""

import numpy as np
import pytest

from bench.steadiness import Steadiness, time_units, unit_of_work


def test_unit_of_work_is_the_same_work_every_time():
    assert unit_of_work() == unit_of_work() == sum(index * index for index in range(2000))


def test_time_units_runs_until_both_the_count_and_the_duration_are_reached():
    samples = time_units(min_runs=7, min_duration_s=0.0)
    assert len(samples) == 7 and (samples > 0).all()
    lasting = time_units(min_runs=1, min_duration_s=0.05)
    assert len(lasting) > 1 and lasting.sum() > 0.025e9  # units back to back for the duration, clock reads aside


def test_steadiness_reads_fast_and_slow_spells_and_the_even_odd_spread():
    fast, slow = np.full(9, 50_000), np.full(9, 100_000)  # ns per unit: a machine at half speed in some slices
    steadiness = Steadiness.from_slices([fast, slow, fast, fast, fast, slow, fast, fast, fast, fast])
    assert steadiness.slices == 10
    assert (steadiness.slice_p10_us, steadiness.slice_p90_us) == pytest.approx((50.0, 100.0))
    assert steadiness.variation == pytest.approx(1.0)
    assert steadiness.spread == 0.0  # the two slow slices fell in odd rounds, but each half's median is fast
    halves = Steadiness.from_slices([fast, slow] * 3)
    assert halves.spread == pytest.approx(1.0)  # every odd slice slow: the halves lie twice apart
    assert halves.to_json()["variation"] == pytest.approx(1.0)


def test_steadiness_needs_two_slices():
    with pytest.raises(ValueError, match="2 slices"):
        Steadiness.from_slices([np.full(3, 50_000)])


def test_the_report_warns_of_an_unsteady_machine_only_past_the_threshold():
    from bench.report.markdown import steadiness_sentence

    steady = {"slices": 120, "slice_p10_us": 90.0, "slice_p90_us": 95.0, "variation": 0.056, "spread": 0.004}
    assert steadiness_sentence(steady) == (
        "The machine itself: a fixed workload timed in every round beside the artifacts ran 6% slower in its slow "
        "spells than in its fast ones (p90 over p10 of 120 slices), and its even and odd rounds were 0.4% apart."
    )
    swinging = {**steady, "slice_p90_us": 168.0, "variation": 0.87}
    assert "87% slower" in steadiness_sentence(swinging)
    assert steadiness_sentence(swinging).endswith("compare artifacts a few percent apart on a steadier machine.")
