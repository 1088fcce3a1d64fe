"""Fitting the variability model to the records of a write-verify run.

:func:`fit_variability` takes a :class:`~programming.tune_result.TuneResult` recorded with
``tune(..., record_trace=True)`` and returns a :class:`FitReport`: the fitted
:class:`~models.variability.VariabilityModel` (named ``"fitted"``), the binned figures behind it,
the sample counts, and the figures that fell back to the base model (with the reason).

A *tuning episode* is one cell's records in one pass.  It is *accepted* when its last read lies in
the tuner's verify band ``target·(1 ± tolerance·(1 − guard))`` (the tuner stopped because the cell
converged); that read is the episode's *convergence reading*.

* **Tuning imprecision.**  e = (reading − target)/target of the convergence reading of each cell's
  last episode (its final tuning), binned by target over the window.  One reading per device cannot
  separate a per-device offset from the tuning spread, so the estimator splits the variance of e
  over the bins instead: ``offset_mean`` = mean e; ``offset_std`` = the (n-weighted) variance of the
  bin means less its sampling noise, i.e. the systematic error that changes with G and one constant
  offset misses; σ_rel(G) = a + b·G = least squares (weights n − 1) of the within-bin std against
  the bins' mean target.  A device-to-device offset that does not depend on G is absorbed into
  σ_rel.  The fit reproduces the mean error and the spread hypot(σ_rel(G), offset_std), whose
  square averaged over the bins is the variance of e.
* **Neighbour drift.**  Each accepted episode gives one sample: the cell's next reading (the first
  read of its next tuning, or ``result.final``) minus its convergence reading.  Its k counts the
  distinct other cells pulsed in between: cells on the same row or column (``"line"``) or anywhere
  on the chip (``"all"``).  In one pass this is :func:`~models.variability.drift_counts` of the
  order in which cells finished.  Using every episode, not just the last, keeps the cells that drift
  out of band and get re-tuned.  For each k in 1..``drift_k_max`` with at least ``min_samples``
  samples, σ_d(k) = s·k^p is a log-log least-squares fit of the per-k std (weights n − 1).  μ_d(k) =
  m·k^q is a least-squares fit of the per-k means in linear space (weights n, i.e. least squares
  over the samples; m in closed form, q on a grid over [0, 3]), because the means may be near zero
  or change sign, which a log-log fit cannot take.
* **Stuck devices.**  The shares are the cells flagged STUCK over the targeted cells.  A cell
  counts as LRS when its final reading is above the window midpoint, otherwise as HRS.  LRS gets
  N(mean, std) of its readings.  HRS gets U(low, high), the unbiased end points
  min − range/(n−1), max + range/(n−1).

Anything with too few samples (fewer than 2 usable bins or k values, fewer than ``min_stuck`` stuck
readings), and everything else (window, ``drift_k_max``, the drift count mode unless given), comes
from ``base`` (default: the ``tio2-3it`` preset).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from programming.tune_result import FAILED, STUCK, TuneResult

from .variability import DRIFT_COUNTS, VariabilityModel, get_variability

TRACE_KEYS = ("chip", "row", "col", "pass", "kind", "reading")


@dataclass
class FitReport:
    """What :func:`fit_variability` found.  ``figures`` (SI units): ``sigma_rel`` bins, ``drift``
    per-k table, ``stuck``; ``counts``: samples behind each part; ``fallbacks``: figure → why the base
    model's value was kept."""

    model: VariabilityModel
    base: VariabilityModel
    figures: dict
    counts: dict
    fallbacks: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "base": self.base.name, "figures": self.figures,
                "counts": self.counts, "fallbacks": self.fallbacks}

    def format(self) -> str:
        """The fitted figures next to the base model's (conductances in µS), with the fallbacks."""
        b, c = self.base, self.counts
        mid = (b.g_min + b.g_max) / 2
        rows = (("sigma_rel(G) = a + b.G", ("sigma_rel", "sigma_rel_b"),
                 lambda m: f"{100 * m.sigma_rel_a:.3f} % {1e-4 * m.sigma_rel_b:+.2e} %/µS"),
                ("  at mid-window", (), lambda m: f"{100 * float(m.sigma_rel(mid)):.3f} %"),
                ("offset N(mean, std)", ("offset",), lambda m: f"{100 * m.offset_mean:.3f} %, {100 * m.offset_std:.3f} %"),
                ("drift sigma(k) = s.k^p", ("drift_sigma",), lambda m: f"{1e6 * m.drift_sigma_a:.3g} µS k^{m.drift_sigma_b:.3f}"),
                ("drift mu(k) = m.k^q", ("drift_mu",), lambda m: f"{1e6 * m.drift_mu_a:.3g} µS k^{m.drift_mu_b:.3f}"),
                ("stuck LRS", ("stuck_lrs",), lambda m: f"{100 * m.stuck_lrs_frac:.2f} %, N({1e6 * m.stuck_lrs_mean:.0f}, "
                                                       f"{1e6 * m.stuck_lrs_std:.0f}) µS"),
                ("stuck HRS", ("stuck_hrs",), lambda m: f"{100 * m.stuck_hrs_frac:.2f} %, U({1e6 * m.stuck_hrs_low:.0f}, "
                                                       f"{1e6 * m.stuck_hrs_high:.0f}) µS"))
        lines = [f"variability fit ({c['cells']} cells, {c['accepted']} converged, {c['drift_samples']} drift "
                 f"samples, {c['stuck']} stuck)", f"  {'':24}{'fitted':>28}  {b.name:>28}"]
        for label, keys, show in rows:
            why = [self.fallbacks[k] for k in keys if k in self.fallbacks]
            lines.append(f"  {label:24}{show(self.model):>28}  {show(b):>28}" + (f"   [{b.name}: {why[0]}]" if why else ""))
        lines.append(f"  drift counted per {self.model.drift_count!r}, k <= {b.drift_k_max}; "
                     f"window {1e6 * b.g_min:.0f}-{1e6 * b.g_max:.0f} µS")
        return "\n".join(lines)


def fit_variability(result: TuneResult, base: VariabilityModel | None = None, *, drift_count: str | None = None,
                    n_bins: int = 4, min_samples: int = 8, min_stuck: int = 3) -> FitReport:
    """Fit a :class:`VariabilityModel` to a traced write-verify run (see the module docstring).

    Args:
        result: from ``tune(..., record_trace=True)``, any number of chips and passes.
        base: supplies the window, ``drift_k_max``, ``drift_count`` and every figure with too few
            samples (default: the ``tio2-3it`` preset).
        drift_count: ``"line"`` or ``"all"`` (default: ``base.drift_count``).
        n_bins: conductance bins over the window for σ_rel(G).
        min_samples: samples a conductance bin or a drift k needs to enter a fit.
        min_stuck: stuck readings needed to fit the LRS / HRS conductance distributions.
    Raises ValueError for a run without a trace, without converged cells, or with mismatched shapes.
    """
    base = base or get_variability("tio2-3it")
    mode = base.drift_count if drift_count is None else drift_count
    if mode not in DRIFT_COUNTS:
        raise ValueError(f"unknown drift count mode {mode!r}; expected one of {DRIFT_COUNTS}")
    if n_bins < 1 or min_samples < 2 or min_stuck < 2:
        raise ValueError("n_bins must be >= 1, min_samples and min_stuck >= 2")
    tr, shape = _checked_trace(result)
    n_trace, cfg = tr["kind"].size, result.config
    cell = (tr["chip"] * shape[1] + tr["row"]) * shape[2] + tr["col"]
    targets, final = result.targets.ravel(), result.final.ravel()

    # tuning episodes: the reads of one cell in one pass, in trace order
    n_pass = int(tr["pass"].max()) + 1
    ridx = np.flatnonzero(tr["kind"] == 0)
    key = cell[ridx] * n_pass + tr["pass"][ridx]
    order = np.argsort(key, kind="stable")
    key, ridx = key[order], ridx[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    first, last = ridx[starts], ridx[np.r_[starts[1:], key.size] - 1]
    ep_cell = key[starts] // n_pass
    g_conv, t = tr["reading"][last], targets[ep_cell]
    accepted = np.isfinite(g_conv) & (np.abs(g_conv - t) <= cfg.tolerance * (1 - cfg.guard) * t * (1 + 1e-9))
    has_next = np.r_[ep_cell[1:] == ep_cell[:-1], False]
    if not accepted.any():
        raise ValueError("no cell converged in the traced run: nothing to fit")

    fallbacks, figures, fit = {}, {}, {"name": "fitted", "drift_count": mode}

    # ---- tuning imprecision: each cell's final tuning
    sel = accepted & ~has_next
    e, g_t = (g_conv[sel] - t[sel]) / t[sel], t[sel]
    edges = np.linspace(base.g_min, base.g_max, n_bins + 1)
    which = np.clip(np.digitize(g_t, edges) - 1, 0, n_bins - 1)
    bins = [dict(g_lo=float(edges[i]), g_hi=float(edges[i + 1]), n=int((which == i).sum()),
                 g_centre=float(g_t[which == i].mean()), mean=float(e[which == i].mean()),
                 std=float(e[which == i].std(ddof=1))) for i in range(n_bins) if (which == i).sum() >= min_samples]
    figures["sigma_rel"] = {"bins": bins}
    if bins:
        n, gc, mb, sb = (np.array([b[k] for b in bins]) for k in ("n", "g_centre", "mean", "std"))
        if len(bins) >= 2:
            fit["sigma_rel_b"], fit["sigma_rel_a"] = (float(v) for v in np.polyfit(gc, sb, 1, w=np.sqrt(n - 1)))
            ntot = n.sum()   # between-bin variance of the bin means, less its sampling noise
            ssb = (n * (mb - (n * mb).sum() / ntot) ** 2).sum()
            msw = ((n - 1) * sb ** 2).sum() / (ntot - n.size)
            fit["offset_std"] = float(np.sqrt(max(ssb - (n.size - 1) * msw, 0.0) / ntot))
        else:   # one bin: its spread at its centre, the slope from base, no between-bin part
            fit.update(sigma_rel_a=float(sb[0] - base.sigma_rel_b * gc[0]), offset_std=0.0)
            fallbacks["sigma_rel_b"] = f"one conductance bin with >= {min_samples} cells: slope kept, offset_std 0"
        fit["offset_mean"] = float(e.mean())
    else:
        fallbacks["sigma_rel"] = fallbacks["offset"] = f"fewer than {min_samples} converged cells in every bin"

    # ---- neighbour drift: every accepted episode up to the cell's next reading
    nxt = np.r_[first[1:], 0]
    win_hi = np.where(has_next, nxt, n_trace)[accepted]
    g_next = np.where(has_next, tr["reading"][nxt], final[ep_cell])[accepted]
    drift = g_next - g_conv[accepted]
    pidx, stride = np.flatnonzero(tr["kind"] == 1), n_trace + 1
    pulse_key = np.sort(cell[pidx] * stride + pidx)
    k = _pulsed_between(ep_cell[accepted], last[accepted], win_hi, pulse_key, stride, shape, mode)
    k, drift = k[np.isfinite(drift)], drift[np.isfinite(drift)]
    table = [dict(k=int(kk), n=int((k == kk).sum()), mean=float(drift[k == kk].mean()),
                  std=float(drift[k == kk].std(ddof=1)) if (k == kk).sum() > 1 else 0.0) for kk in np.unique(k)]
    figures["drift"] = {"count": mode, "table": table}
    use = [r for r in table if 1 <= r["k"] <= base.drift_k_max and r["n"] >= min_samples and r["std"] > 0]
    if len(use) >= 2:
        kk, n, mu, sd = (np.array([r[f] for r in use], float) for f in ("k", "n", "mean", "std"))
        p, log_s = np.polyfit(np.log(kk), np.log(sd), 1, w=np.sqrt(n - 1))
        fit.update(drift_sigma_a=float(np.exp(log_s)), drift_sigma_b=float(p))
        q = np.linspace(0.0, 3.0, 301)[:, None]
        w, kq = n, kk[None, :] ** q
        m = (w * mu * kq).sum(1) / (w * kq ** 2).sum(1)
        best = int(np.argmin((w * (mu - m[:, None] * kq) ** 2).sum(1)))
        fit.update(drift_mu_a=float(m[best]), drift_mu_b=float(q[best, 0]))
    else:
        fallbacks["drift_sigma"] = fallbacks["drift_mu"] = \
            f"fewer than 2 drift counts k in 1..{base.drift_k_max} with >= {min_samples} samples"

    # ---- stuck devices
    targeted = ~np.isnan(result.targets)
    n_cells = int(targeted.sum())
    stuck = targeted & (result.status == STUCK)
    g_st = result.final[stuck & np.isfinite(result.final)]
    lrs, hrs = g_st[g_st > (base.g_min + base.g_max) / 2], g_st[g_st <= (base.g_min + base.g_max) / 2]
    fit.update(stuck_lrs_frac=lrs.size / n_cells, stuck_hrs_frac=hrs.size / n_cells)
    if lrs.size >= min_stuck:
        fit.update(stuck_lrs_mean=float(lrs.mean()), stuck_lrs_std=float(lrs.std(ddof=1)))
    else:
        fallbacks["stuck_lrs"] = f"{lrs.size} stuck LRS reading(s), {min_stuck} needed"
    if hrs.size >= min_stuck:
        spread = (hrs.max() - hrs.min()) / (hrs.size - 1)
        fit.update(stuck_hrs_low=float(max(hrs.min() - spread, 0.0)), stuck_hrs_high=float(hrs.max() + spread))
    else:
        fallbacks["stuck_hrs"] = f"{hrs.size} stuck HRS reading(s), {min_stuck} needed"
    figures["stuck"] = {"lrs": lrs.tolist(), "hrs": hrs.tolist()}

    counts = dict(cells=n_cells, chips=shape[0], passes=n_pass, episodes=int(starts.size),
                  accepted=int(sel.sum()), drift_samples=int(drift.size),
                  drift_samples_fitted=int(sum(r["n"] for r in use)), stuck=int(stuck.sum()),
                  stuck_lrs=int(lrs.size), stuck_hrs=int(hrs.size),
                  failed=int((targeted & (result.status == FAILED)).sum()))
    return FitReport(base.with_(**fit), base, figures, counts, fallbacks)


def _pulsed_between(cells, win_lo, win_hi, pulse_key, stride, shape, mode, chunk_cells: int = 2_000_000):
    """For each (cell, trace window): how many distinct other cells of its chip (``"line"``: on its
    row or column) have a pulse record strictly inside the window."""
    _, n_rows, n_cols = shape
    chip, rc = np.divmod(cells, n_rows * n_cols)
    row, col = np.divmod(rc, n_cols)
    out = np.zeros(cells.size, np.int64)
    width = n_rows + n_cols if mode == "line" else n_rows * n_cols
    step = max(1, chunk_cells // width)
    for s in range(0, cells.size, step):
        sl = slice(s, s + step)
        first = (chip[sl] * n_rows * n_cols)[:, None]   # the chip's first cell
        if mode == "line":
            cand = np.concatenate([first + row[sl, None] * n_cols + np.arange(n_cols),
                                   first + np.arange(n_rows) * n_cols + col[sl, None]], axis=1)
        else:
            cand = first + np.arange(n_rows * n_cols)
        lo = np.searchsorted(pulse_key, cand * stride + win_lo[sl, None], "right")
        hi = np.searchsorted(pulse_key, cand * stride + win_hi[sl, None], "left")
        out[sl] = ((hi > lo) & (cand != cells[sl, None])).sum(axis=1)
    return out


def _checked_trace(result: TuneResult):
    if not isinstance(result, TuneResult):
        raise ValueError(f"expected a TuneResult, got {type(result).__name__}")
    if result.trace is None:
        raise ValueError("the tuning run has no trace: tune with record_trace=True")
    missing = [k for k in TRACE_KEYS if k not in result.trace]
    if missing:
        raise ValueError(f"the trace lacks {missing}: tune with record_trace=True")
    shape = np.shape(result.targets)
    for name in ("status", "final"):
        if np.shape(getattr(result, name)) != shape:
            raise ValueError(f"mismatched shapes: targets {shape}, {name} {np.shape(getattr(result, name))}")
    if len(shape) != 3:
        raise ValueError(f"the records must be (chips, rows, cols), got targets of shape {shape}")
    tr = {k: np.asarray(result.trace[k]) for k in TRACE_KEYS}
    lengths = {tr[k].shape for k in TRACE_KEYS}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise ValueError(f"mismatched shapes: trace arrays {({k: tr[k].shape for k in TRACE_KEYS})}")
    if tr["kind"].size == 0:
        raise ValueError("the trace is empty: no cell was tuned, nothing to fit")
    for k, n in zip(("chip", "row", "col"), shape):
        tr[k] = tr[k].astype(np.int64)
        if tr[k].min() < 0 or tr[k].max() >= n:
            raise ValueError(f"mismatched shapes: trace {k} indices reach {tr[k].max()}, the records have {n}")
    tr["pass"], tr["kind"], tr["reading"] = tr["pass"].astype(np.int64), tr["kind"].astype(np.int64), \
        tr["reading"].astype(float)
    return tr, shape
