"""Measured FFT costs and plans made ahead (issue 17): no timing is asserted, only what was measured and kept."""

import numpy as np
import pytest

from streamer.phasing import fft
from streamer.service.costs import FftCosts


def test_a_shape_is_timed_once_and_other_shapes_and_batches_scale_from_it():
    costs = FftCosts(np, threads=1, repeats=2)
    try:
        t = costs.time_pair((16, 16, 16))
        assert t > 0 and costs.time_pair((16, 16, 16)) == t  # remembered, not timed again
        assert costs((16, 16, 16), 4) == 4 * t
        bigger = costs((32, 32, 32), 1)  # not timed: scaled by N log N from 16^3
        assert bigger == t * (32**3 * 15) / (16**3 * 12)
        assert (32, 32, 32) not in costs._timed
    finally:
        costs.close()


def test_plans_made_ahead_are_the_ones_the_engine_then_finds():
    costs = FftCosts(np, threads=1)
    try:
        plan = costs.plan_ahead((8, 12, 10), 3).result(60)
        assert costs.plan_ahead((8, 12, 10), 3).result(1) is plan  # one plan per shape
        assert fft.get_plan(np, (3, 8, 12, 10), threads=1) is plan
    finally:
        costs.close()


def test_a_shape_with_no_remembered_plan_runs_on_scipy_until_it_is_planned(monkeypatch):
    from streamer.phasing.fft import have_pyfftw

    monkeypatch.setattr(fft, "PLAN_NOW_VOXELS", 1000)  # this test's 1680 voxels count as a large problem

    if not have_pyfftw():  # without pyFFTW every plan is scipy's: nothing to stand in for
        assert fft.get_plan(np, (1, 8, 8, 10), threads=1).kind == "scipy"
        return
    import pyfftw

    pyfftw.forget_wisdom()
    shape = (1, 10, 12, 14)
    stand_in = fft.get_plan(np, shape, threads=1, effort="FFTW_MEASURE", unplanned="scipy")
    assert stand_in.kind == "scipy"  # no wisdom: not planned now
    planned = fft.get_plan(np, shape, threads=1, effort="FFTW_MEASURE", unplanned="plan")
    assert planned.kind == "fftw"
    assert fft.get_plan(np, shape, threads=1, effort="FFTW_MEASURE", unplanned="scipy") is planned
    fft._PLANS.clear()  # a new process that remembers the wisdom gets FFTW at once, without planning
    assert fft.get_plan(np, shape, threads=1, effort="FFTW_MEASURE", unplanned="scipy").kind == "fftw"


def test_a_small_shape_with_no_remembered_plan_is_planned_at_once(monkeypatch):
    from streamer.phasing.fft import have_pyfftw

    if not have_pyfftw():
        return
    import pyfftw

    pyfftw.forget_wisdom()
    monkeypatch.setattr(fft, "PLAN_NOW_VOXELS", 2000)
    assert fft.get_plan(np, (1, 10, 12, 14), threads=1, effort="FFTW_MEASURE", unplanned="scipy").kind == "fftw"
    # a batch of members large enough to be swept one at a time is measured on one member
    assert fft._measured_voxels((8, 128, 128, 128)) == 128**3 and fft._measured_voxels((8, 16, 16, 16)) == 8 * 16**3


def test_fftw_transforms_both_ways_with_one_planned_problem():
    """The inverse is the forward plan on the conjugate: both equal numpy's, batched and member by member, and a
    plan from wisdom alone needs only the forward problem to be remembered."""
    from streamer.phasing.wisdom import import_pyfftw

    rng = np.random.default_rng(3)
    for shape, sweep_voxels in (((2, 6, 8, 10), 1 << 20), ((3, 6, 8, 10), 100)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fft, "MEMBER_SWEEP_VOXELS", sweep_voxels)
            plan = fft.FFTWPlan(shape, 1, "FFTW_ESTIMATE")
            x = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
            plan.input[...] = x
            for k in plan.blocks:
                part = slice(None) if k is None else slice(k, k + 1)
                spectrum = (plan.forward(plan.input) if k is None else plan.forward_member(k)).copy()
                np.testing.assert_allclose(spectrum, np.fft.fftn(x[part], axes=(1, 2, 3)), rtol=1e-4, atol=1e-3)
                y = spectrum * 0.5
                back = np.fft.ifftn(y, axes=(1, 2, 3)) * np.prod(shape[1:])
                np.testing.assert_allclose(plan.inverse(y.copy()), back, rtol=1e-4, atol=1e-3)
                np.testing.assert_allclose(plan.inverse_conjugate(np.conj(y)), np.conj(back), rtol=1e-4, atol=1e-3)
    pyfftw = import_pyfftw()
    pyfftw.forget_wisdom()
    shape = (1, 6, 10, 12)
    a, b = pyfftw.empty_aligned(shape, "complex64"), pyfftw.empty_aligned(shape, "complex64")
    pyfftw.FFTW(a, b, axes=(1, 2, 3), direction="FFTW_FORWARD", flags=("FFTW_MEASURE",), threads=1)
    fft.FFTWPlan(shape, 1, "FFTW_MEASURE", wisdom_only=True)  # no RuntimeError: nothing else to plan


def test_a_shape_is_timed_past_its_first_pairs_warm_up(monkeypatch):
    """In a process that has just prepared a detector scan the first pairs ran three times slower: the least of
    five read the warm-up, and the budget halved the iterations of every detector scan. A fake clock: the first
    eight pairs take 15 ms, then 4 ms."""
    import types

    from streamer.service import costs as module

    clock = types.SimpleNamespace(now=0.0, calls=0)

    class Plan:
        input = None

        def forward(self, x):
            clock.calls += 1
            clock.now += 0.015 if clock.calls <= 8 else 0.004
            return x

        def inverse(self, y):
            return y

    monkeypatch.setattr(module, "get_plan", lambda xp, shape, threads=None: Plan())
    monkeypatch.setattr(module, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    costs = FftCosts(np, threads=1)
    try:
        assert costs.time_pair((64, 128, 128)) == pytest.approx(0.004)
        assert clock.calls >= 8 + 5 and clock.now >= module.WARM_UP_S
    finally:
        costs.close()
