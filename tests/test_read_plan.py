"""Products of a read plan (:mod:`programming.read_plan`, :meth:`~programming.crossbar.Crossbar.mvm_plan`):
the needed currents of the whole product, bit for bit with the same read noise, whether the
simulated chip works them out from the varying vectors' product and the fixed one-hot rows or
through the whole product; plans are checked once, when made."""
from __future__ import annotations

import numpy as np
import pytest

from mock_hw.sim_chip import SimulatedCrossbar
from programming.crossbar import LimitError
from tests.conftest import SpyCrossbar


def _layout(case, n_chips, rng):
    """(need (N, 12), fixed (n_chips, N, 10) V, varying (N,)) on a 10x12 chip: 5 vectors driving
    rows 0-2 read columns 0-5, 3 driving rows 3-6 read columns 6-9, then one-hot (and one all-zero)
    vectors reading rows 0-6."""
    n_var, R, C = 8, 10, 12
    need = np.zeros((n_var + 8, C), bool)
    need[:5, :6] = need[5:8, 6:10] = True
    fixed = np.zeros((n_chips, n_var + 8, R))
    for k in range(7):                              # one-hot rows 0..6, the last vector at 0 V
        fixed[:, n_var + k, k] = 0.2
        need[n_var + k, (0 if k < 3 else 6):(6 if k < 3 else 10)] = True
    need[-1, :4] = True
    varying = np.arange(n_var + 8) < n_var
    if case == "fixed drive two rows":             # not one-hot: through the whole product
        fixed[:, n_var + 1, 2] = 0.1
    if case == "varying after fixed":
        need, fixed, varying = need[::-1].copy(), fixed[:, ::-1].copy(), varying[::-1].copy()
    if case == "all varying":
        varying[:] = True
    return need, fixed, varying


@pytest.mark.parametrize("case", ["one-hot fixed", "all varying", "fixed drive two rows", "varying after fixed"])
@pytest.mark.parametrize("through", ["simulator", "interface default"])
def test_mvm_plan_gives_the_needed_currents_of_the_whole_product(case, through):
    rng = np.random.default_rng(5)
    make = lambda: SimulatedCrossbar(10, 12, n_chips=2, preset="asymmetric", seed=3)  # noqa: E731
    xb, ref = make(), make()
    chip = xb if through == "simulator" else SpyCrossbar(xb)
    need, fixed, varying = _layout(case, 2, rng)
    plan = chip.read_plan(need, fixed=fixed, varying=varying)
    for _ in range(3):
        v = np.zeros((2, varying.sum(), 10))
        top = np.flatnonzero(varying)
        for i, n in enumerate(top):                 # varying vectors drive the rows of their block
            rows = slice(0, 3) if need[n, 0] else slice(3, 7)
            v[:, i, rows] = 0.25 * rng.random((2, rows.stop - rows.start))
        whole = fixed.copy()
        whole[:, varying] = v
        got = chip.mvm_plan(plan, v)
        want = ref.mvm(whole, need=need)[:, need]
        np.testing.assert_array_equal(got, want)
        assert got.shape == (2, need.sum())
    assert xb._rng.random() == ref._rng.random()                # the same read-noise draws


def test_a_small_plan_on_one_hot_rows_reads_without_the_whole_product(monkeypatch):
    """The fast path is taken (no whole product) where it applies, and not where it does not."""
    xb = SimulatedCrossbar(10, 12, n_chips=2, preset="asymmetric", seed=3)
    whole = []
    monkeypatch.setattr(SimulatedCrossbar, "_mvm_needed", lambda self, v, need: whole.append(v.shape) or
                        np.zeros((self.n_chips, v.shape[1], self.shape[1])))
    for case, through_whole in [("one-hot fixed", False), ("all varying", False), ("fixed drive two rows", True),
                                ("varying after fixed", True)]:
        need, fixed, varying = _layout(case, 2, np.random.default_rng(0))
        whole.clear()
        xb.mvm_plan(xb.read_plan(need, fixed=fixed, varying=varying), np.zeros((2, varying.sum(), 10)))
        assert bool(whole) == through_whole, case


def test_read_plan_and_mvm_plan_refuse_bad_layouts_and_inputs():
    xb = SimulatedCrossbar(10, 12, n_chips=2, preset="asymmetric", seed=3)
    need, fixed, varying = _layout("one-hot fixed", 2, np.random.default_rng(0))
    cases = [(dict(need=need[:, :5]), ValueError, r"shape \(N, 12\)"),
             (dict(need=need.astype(int)), ValueError, "boolean mask"),
             (dict(varying=varying[:3]), ValueError, r"varying must be a boolean mask of shape \(16,\)"),
             (dict(fixed=None), ValueError, "needs the fixed vectors' voltages"),
             (dict(fixed=np.where(fixed > 0, 0.7, 0.0)), LimitError, "exceeds the limit v_read_max"),
             (dict(fixed=np.where(fixed > 0, np.nan, 0.0)), LimitError, "not finite"),
             (dict(drive=[0, 1, 80]), ValueError, r"drive positions must lie in \[0, 80\)"),
             (dict(drive=[0, 1, 1]), ValueError, "drive lists a position twice"),
             (dict(drive=[0.0, 1.0]), ValueError, "integer positions")]
    for change, err, msg in cases:
        with pytest.raises(err, match=msg):
            xb.read_plan(**{**dict(need=need, fixed=fixed, varying=varying), **change})
    plan = xb.read_plan(need, fixed=fixed, varying=varying)
    with pytest.raises(ValueError, match=r"shape \(2, 8, 10\)"):
        xb.mvm_plan(plan, np.zeros((2, 7, 10)))
    with pytest.raises(LimitError, match="exceeds the limit v_read_max"):
        xb.mvm_plan(plan, np.full((2, 8, 10), 0.6))
    with pytest.raises(ValueError, match="made for this chip"):
        SimulatedCrossbar(10, 12, preset="asymmetric").mvm_plan(plan, np.zeros((1, 8, 10)))
    with pytest.raises(ValueError, match=r"shape \(2, 3\) \(n_chips, drive positions\)"):
        xb.mvm_plan(xb.read_plan(need, fixed=fixed, varying=varying, drive=[0, 1, 2]), np.zeros((2, 8, 10)))


@pytest.mark.parametrize("n_chips, per_run", [(1, 1200), (2, 1300), (1, 20)])
@pytest.mark.parametrize("through", ["simulator", "interface default"])
def test_mvm_plan_of_inputs_at_their_drive_positions_equals_the_whole_product(n_chips, per_run, through):
    """Varying vectors given only at the rows they drive (four runs of vectors, each driving its own
    block of rows and needing its own block of columns; in one run a row held at 0 V throughout):
    large products (worked out run by run as :meth:`_mvm_blocks` does) and small ones give the needed
    currents of the whole product bit for bit, with the same read noise."""
    rng = np.random.default_rng(8)
    make = lambda: SimulatedCrossbar(10, 12, n_chips=n_chips, preset="asymmetric", seed=4)  # noqa: E731
    xb, ref = make(), make()
    chip = xb if through == "simulator" else SpyCrossbar(xb)
    blocks = [(range(0, 3), range(0, 4)), (range(3, 6), range(4, 7)), (range(6, 8), range(7, 12)),
              (range(8, 10), range(0, 3))]
    n = 4 * per_run
    need = np.zeros((n, 12), bool)
    drive = []
    for k, (rows, cols) in enumerate(blocks):
        need[k * per_run:(k + 1) * per_run, cols.start:cols.stop] = True
        drive += [(k * per_run + j) * 10 + r for j in range(per_run) for r in rows]
    drive = np.array(drive)
    plan = chip.read_plan(need, drive=drive)
    for _ in range(2):
        v = 0.3 * rng.random((n_chips, drive.size))
        v[:, (drive % 10) == 4] = 0.0                       # row 4 at 0 V in its run
        whole = np.zeros((n_chips, n * 10))
        whole[:, drive] = v
        got = chip.mvm_plan(plan, v)
        want = ref.mvm(whole.reshape(n_chips, n, 10), need=need)[:, need]
        np.testing.assert_array_equal(got, want)
    assert xb._rng.random() == ref._rng.random()
    assert (xb._block_runs(plan) is not None) == (per_run > 100)     # the run-by-run path where it applies
