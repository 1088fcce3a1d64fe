"""Fitting the variability model to tuning records: simulated chips, synthetic records, bad input."""
import json

import numpy as np
import pytest
import torch

from mock_hw.sim_chip import SimulatedCrossbar
from models.variability import VariabilityModel, drift_counts, get_variability
from models.variability_fit import FitReport, fit_variability
from programming.schedule import cell_order, cell_rank
from programming.tune_result import CONVERGED, DISTURBED, FAILED, STUCK, TuneResult
from programming.tuner import TunerConfig, tune


def _sim_run(shape, n_chips, seed, **cfg):
    # ideal lines: the drift law was measured and fitted on tuned cells, not on IR-biased reads
    xb = SimulatedCrossbar(*shape, n_chips=n_chips, preset="tio2-3it", seed=seed, r_line=0.0)
    targets = np.random.default_rng(seed).uniform(*xb.programming_window, size=(n_chips, *shape))
    return xb, tune(xb, targets, TunerConfig(order="column", seed=seed, **cfg), record_trace=True)


@pytest.fixture(scope="module")
def sim16():
    """The default recipe (3 passes, the chip's parallel slots) on two 16x16 chips."""
    return _sim_run((16, 16), 2, 5)


def test_the_simulated_chip_reproduces_the_measured_drift_law():
    # the measurement's protocol: 8x8 arrays tuned cell by cell, column-major, one pass, each cell's
    # initial RESET just before it is tuned (not the tuner's default sweep), k = all later cells;
    # the fit must recover the law fitted to the 3IT samples, sigma(k) = 6.78 uS k^0.26
    _, res = _sim_run((8, 8), 48, 3, parallel=1, passes=1, reset_sweep=False)
    m = fit_variability(res, drift_count="all").model
    base = get_variability("tio2-3it")
    for k in (1, 5, 15, 30):
        assert float(m.drift_sigma(k)) == pytest.approx(float(base.drift_sigma(k)), rel=0.2), k
    assert float(m.drift_mu(30)) == pytest.approx(float(base.drift_mu(30)), rel=0.3)
    # and without the relaxation the chip's drift is far from it (the law comes from the physics)
    xb = SimulatedCrossbar(8, 8, n_chips=48, preset="tio2-3it", seed=3, r_line=0.0)
    xb.params = xb.params.with_(device=xb.params.device.with_(disturb_sigma=0.0, disturb_mu=0.0))
    targets = np.random.default_rng(3).uniform(*xb.programming_window, size=(48, 8, 8))
    quiet = fit_variability(tune(xb, targets, TunerConfig(order="column", seed=3, parallel=1, passes=1,
                                                          reset_sweep=False),
                                 record_trace=True), drift_count="all").model
    assert float(quiet.drift_sigma(1)) < 0.5 * float(base.drift_sigma(1))


def test_fit_on_the_simulated_chip_matches_what_the_chip_shows(sim16):
    xb, res = sim16
    assert fit_variability(res).model.drift_count == "all"                 # the preset's convention
    # a 16x16 chip tuned in passes: most cells have more than drift_k_max later cells in the array,
    # so the chip's spread is compared along lines (k = later cells on the same row or column)
    rep = fit_variability(res, drift_count="line")
    m = rep.model
    assert isinstance(rep, FitReport) and m.name == "fitted" and m.drift_count == "line"
    conv = res.status == CONVERGED
    measured = res.rel_error[conv].std()
    mid = (m.g_min + m.g_max) / 2
    assert measured / 2 <= m.sigma_rel(mid) <= 2 * measured
    assert measured / 2 <= np.hypot(m.sigma_rel(mid), m.offset_std) <= 2 * measured
    assert abs(m.offset_mean) < res.config.tolerance                       # no offset beyond the band
    # drift: positive spread that grows with k; no fallback with 2 chips of data
    assert m.drift_sigma_a > 0 and m.drift_sigma(16) > m.drift_sigma(1)
    assert not {"sigma_rel", "offset", "drift_sigma", "drift_mu"} & rep.fallbacks.keys()
    # stuck shares are the flagged counts over the cells, split at the window midpoint
    cells = res.targets.size
    flagged = res.status == STUCK
    assert m.stuck_lrs_frac + m.stuck_hrs_frac == pytest.approx(flagged.sum() / cells)
    assert m.stuck_lrs_frac == pytest.approx((flagged & (res.final > mid)).sum() / cells)
    assert rep.counts["cells"] == cells and rep.counts["stuck"] == flagged.sum()
    assert rep.counts["accepted"] == np.isin(res.status, (CONVERGED, DISTURBED)).sum()
    # the window, clamp and whatever lacked samples come from the base model
    base = get_variability("tio2-3it")
    assert (m.g_min, m.g_max, m.drift_k_max) == (base.g_min, base.g_max, base.drift_k_max)
    # a usable model: samples, survives to_dict / from_dict and JSON, and the report prints
    g = torch.full((4, 8), 300e-6, dtype=torch.float64)
    t = m.sample(g, k=torch.randint(0, 20, (4, 8)), n=5, generator=torch.Generator().manual_seed(0))
    assert t.g.shape == (5, 4, 8) and torch.isfinite(t.g).all()
    assert VariabilityModel.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    json.dumps(rep.to_dict())
    text = rep.format()
    assert "µS" in text and "tio2-3it" in text and "sigma_rel" in text


def test_single_pass_drift_counts_and_end_to_end_spread():
    """One cell at a time in one pass: the recovered k are drift_counts of the programming order,
    and the fitted model reproduces the chip's final error spread (each cell's initial RESET just
    before it is tuned, as the drift law was measured)."""
    xb, res = _sim_run((8, 8), 4, 2, passes=1, parallel=1, reset_sweep=False)
    rank = cell_rank((8, 8), "column")
    accepted = np.isin(res.status, (CONVERGED, DISTURBED))
    for mode in ("line", "all"):
        rep = fit_variability(res, drift_count=mode)
        k = np.broadcast_to(drift_counts(np.ones((8, 8), bool), rank, mode), accepted.shape)
        want = np.bincount(k[accepted])
        got = {r["k"]: r["n"] for r in rep.figures["drift"]["table"]}
        assert got == {i: int(n) for i, n in enumerate(want) if n}
        assert rep.model.drift_count == mode
    rep = fit_variability(res)
    k = np.broadcast_to(drift_counts(np.ones((8, 8), bool), rank, "line"), res.targets.shape)
    s = rep.model.sample(torch.as_tensor(res.targets), k=torch.as_tensor(k.copy()), n=400, stuck=False,
                         generator=torch.Generator().manual_seed(1)).g.numpy()
    work = res.status != STUCK
    chip_err, model_err = (res.final - res.targets)[work], (s - res.targets)[:, work]
    assert chip_err.std() / 2 <= model_err.std() <= 2 * chip_err.std()


# ------------------------------------------------------------------ synthetic records, known truth
TRUTH = dict(sigma_rel_a=0.5e-2, sigma_rel_b=-4.0, offset_mean=-0.4e-2, offset_std=0.2e-2, drift_sigma_a=5e-6,
             drift_sigma_b=0.3, drift_mu_a=-1e-6, drift_mu_b=0.9, stuck_lrs_frac=0.01, stuck_lrs_mean=550e-6,
             stuck_lrs_std=60e-6, stuck_hrs_frac=0.01, stuck_hrs_low=20e-6, stuck_hrs_high=90e-6)


def _synthetic(n_chips=200, shape=(8, 8), seed=0, truth=VariabilityModel(**TRUTH)) -> TuneResult:
    """Records of a one-pass, one-cell-at-a-time column-major run whose convergence readings and
    drifts are drawn from ``truth`` (a pulse then an accepting read per cell, all chips in step)."""
    rng = np.random.default_rng(seed)
    full = (n_chips, *shape)
    targets = rng.uniform(100e-6, 500e-6, full)
    conv = targets * (1 + rng.normal(truth.offset_mean, truth.offset_std, full)
                      + truth.sigma_rel(targets) * rng.standard_normal(full))
    k = np.broadcast_to(drift_counts(np.ones(shape, bool), cell_rank(shape, "column"), "line"), full)
    final = conv + truth.drift_mu(k) + truth.drift_sigma(k) * rng.standard_normal(full)
    u = rng.random(full)
    lrs, hrs = u < truth.stuck_lrs_frac, (u >= truth.stuck_lrs_frac) & (u < truth.stuck_frac)
    final[lrs] = rng.normal(truth.stuck_lrs_mean, truth.stuck_lrs_std, lrs.sum())
    final[hrs] = rng.uniform(truth.stuck_hrs_low, truth.stuck_hrs_high, hrs.sum())
    conv = np.where(lrs | hrs, targets / 2, conv)                          # stuck: never in band
    status = np.where(lrs | hrs, STUCK, CONVERGED).astype(np.int8)
    chips = np.arange(n_chips)
    trace = {key: [] for key in ("chip", "row", "col", "pass", "kind", "amplitude", "width", "reading")}
    for r, c in zip(*cell_order(shape, "column")):
        for kind, reading in ((1, np.full(n_chips, np.nan)), (0, conv[:, r, c])):
            for key, v in (("chip", chips), ("row", r), ("col", c), ("pass", 0), ("kind", kind), ("amplitude", 1.0),
                           ("width", 1e-6), ("reading", reading)):
                trace[key].append(np.broadcast_to(v, (n_chips,)))
    trace = {key: np.concatenate(v) for key, v in trace.items()}
    zeros = np.zeros(full)
    return TuneResult(targets, status, zeros.astype(int), zeros.astype(int), zeros, zeros, final,
                      (final - targets) / targets, TunerConfig(tolerance=0.2), trace=trace)


def test_synthetic_records_recover_the_known_model():
    truth = VariabilityModel(**TRUTH)
    res = _synthetic()
    rep = fit_variability(res, drift_count="line")                        # the records' k convention
    m = rep.model
    assert rep.fallbacks == {}
    assert m.offset_mean == pytest.approx(truth.offset_mean, abs=0.03e-2)
    # one reading per device: the fit reproduces the total spread, not its split (module docstring)
    for g in (150e-6, 300e-6, 450e-6):
        assert np.hypot(m.sigma_rel(g), m.offset_std) == pytest.approx(np.hypot(truth.sigma_rel(g), truth.offset_std),
                                                                        rel=0.05)
    assert m.drift_sigma_a == pytest.approx(truth.drift_sigma_a, rel=0.1)
    assert m.drift_sigma_b == pytest.approx(truth.drift_sigma_b, abs=0.05)
    for k in (2, 6, 12):
        assert m.drift_sigma(k) == pytest.approx(truth.drift_sigma(k), rel=0.05)
        assert m.drift_mu(k) == pytest.approx(truth.drift_mu(k), rel=0.15, abs=0.2e-6)
    cells = res.targets.size
    assert m.stuck_lrs_frac == pytest.approx(((res.status == STUCK) & (res.final > 300e-6)).sum() / cells)
    assert m.stuck_hrs_frac == pytest.approx(((res.status == STUCK) & (res.final <= 300e-6)).sum() / cells)
    assert m.stuck_lrs_mean == pytest.approx(truth.stuck_lrs_mean, rel=0.03)
    assert m.stuck_lrs_std == pytest.approx(truth.stuck_lrs_std, rel=0.25)
    assert m.stuck_hrs_low == pytest.approx(truth.stuck_hrs_low, abs=3e-6)
    assert m.stuck_hrs_high == pytest.approx(truth.stuck_hrs_high, abs=3e-6)


def test_a_conductance_dependent_mean_error_becomes_the_offset_spread():
    truth = VariabilityModel(**{**TRUTH, "offset_std": 0.0, "sigma_rel_b": 0.0})
    res = _synthetic(n_chips=100, truth=truth)
    shift = np.where(res.targets < 300e-6, 0.3e-2, -0.3e-2)               # ±0.3 % by conductance range
    res.trace["reading"][res.trace["kind"] == 0] += (shift * res.targets).transpose(2, 1, 0).reshape(-1)
    m = fit_variability(res).model
    assert m.offset_std == pytest.approx(0.3e-2, rel=0.1)
    assert m.sigma_rel(300e-6) == pytest.approx(truth.sigma_rel_a, rel=0.1)


def test_too_few_samples_fall_back_to_the_base_model():
    res = _synthetic(n_chips=1, shape=(4, 4), truth=VariabilityModel(**{**TRUTH, "stuck_lrs_frac": 0,
                                                                          "stuck_hrs_frac": 0}))
    base = get_variability("tio2-3it").with_(name="mybase", drift_sigma_a=3e-6)
    rep = fit_variability(res, base)
    m = rep.model
    assert {"sigma_rel", "offset", "drift_sigma", "drift_mu", "stuck_lrs", "stuck_hrs"} <= rep.fallbacks.keys()
    for name in ("sigma_rel_a", "sigma_rel_b", "offset_mean", "drift_sigma_a", "drift_mu_b", "stuck_lrs_mean",
                 "stuck_hrs_high"):
        assert getattr(m, name) == getattr(base, name)
    assert m.stuck_lrs_frac == 0 and m.stuck_hrs_frac == 0                # shares are always measured
    assert "[mybase:" in rep.format()
    one = fit_variability(res, base, n_bins=1)                           # one bin: its spread, base's slope
    b = one.figures["sigma_rel"]["bins"][0]
    assert b["n"] == 16 and one.model.sigma_rel(b["g_centre"]) == pytest.approx(b["std"])
    assert one.model.sigma_rel_b == base.sigma_rel_b and one.model.offset_std == 0 and "sigma_rel_b" in one.fallbacks


def test_bad_input_is_refused():
    res = _synthetic(n_chips=2)
    with pytest.raises(ValueError, match="record_trace=True"):
        fit_variability(TuneResult(**{**vars(res), "trace": None}))
    with pytest.raises(ValueError, match="mismatched shapes"):
        fit_variability(TuneResult(**{**vars(res), "final": res.final[:, :4]}))
    short = {**res.trace, "reading": res.trace["reading"][:-3]}
    with pytest.raises(ValueError, match="mismatched shapes"):
        fit_variability(TuneResult(**{**vars(res), "trace": short}))
    far = {**res.trace, "row": res.trace["row"] + 8}
    with pytest.raises(ValueError, match="mismatched shapes"):
        fit_variability(TuneResult(**{**vars(res), "trace": far}))
    off = {**res.trace, "reading": res.trace["reading"] * 3}               # every read out of band
    with pytest.raises(ValueError, match="no cell converged"):
        fit_variability(TuneResult(**{**vars(res), "trace": off, "status": np.full_like(res.status, FAILED)}))
    with pytest.raises(ValueError, match="drift count"):
        fit_variability(res, drift_count="diagonal")


def test_get_variability_takes_a_preset_or_a_fitted_file(tmp_path):
    assert get_variability("ideal").name == "ideal" and get_variability("ideal").sigma_rel_a == 0
    path = tmp_path / "fit.json"
    model = get_variability("tio2-3it").with_(name="fitted", offset_mean=0.001)
    path.write_text(json.dumps(model.to_dict()))
    assert get_variability(path) == model and get_variability(str(path)) == model
    with pytest.raises(ValueError, match="unknown variability model 'nope'"):
        get_variability("nope")
    with pytest.raises(ValueError, match="neither a preset"):
        get_variability(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        get_variability(tmp_path / "bad.json")
    (tmp_path / "odd.json").write_text(json.dumps({"bogus": 1}))
    with pytest.raises(ValueError, match="not a valid variability model.*bogus"):
        get_variability(tmp_path / "odd.json")
