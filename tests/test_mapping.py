import numpy as np
import pytest

from programming.mapping import ConductanceMapping, MappedWeights, MappingError, check_targets

G_MIN, G_MAX = 100e-6, 500e-6
CONFIGS = [("differential", "one-sided"), ("differential", "balanced"), ("reference", "one-sided")]


def _w(shape=(3, 5), seed=0):
    return np.random.default_rng(seed).normal(size=shape)


@pytest.mark.parametrize("mode,split", CONFIGS)
def test_round_trip_and_window(mode, split):
    m = ConductanceMapping(mode=mode, split=split)
    w = _w()
    mw = m.encode(w)
    assert isinstance(mw, MappedWeights)
    assert mw.targets.shape == m.layout_shape(3, 5) == mw.shape
    assert (mw.n_out, mw.n_in, mw.mode) == (3, 5, mode)
    assert mw.w_max == pytest.approx(np.abs(w).max())
    assert mw.targets.min() >= G_MIN and mw.targets.max() <= G_MAX
    # the full range is used by the largest weight
    assert mw.targets.max() == pytest.approx(G_MAX) or mw.targets.min() == pytest.approx(G_MIN)
    np.testing.assert_allclose(mw.decode(mw.targets), w, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m.decode(mw.targets, mw), w, rtol=0, atol=1e-12)
    check_targets(mw.targets, G_MIN, G_MAX, shape=m.layout_shape(3, 5))


def test_layouts():
    w = np.array([[1.0, -0.5], [0.0, 0.25], [-1.0, 0.5]])  # n_out=3, n_in=2
    d = ConductanceMapping().encode(w).targets
    assert d.shape == (2, 6)
    # output 0, input 0: w=+1 -> G+ = g_max, G- = g_min
    assert d[0, 0] == pytest.approx(G_MAX) and d[0, 1] == pytest.approx(G_MIN)
    # output 2, input 0: w=-1 -> G+ = g_min, G- = g_max
    assert d[0, 4] == pytest.approx(G_MIN) and d[0, 5] == pytest.approx(G_MAX)
    b = ConductanceMapping(split="balanced").encode(w).targets
    assert b[0, 0] == pytest.approx(G_MAX) and b[0, 1] == pytest.approx(G_MIN)
    assert b[0, 2] == pytest.approx(300e-6) and b[0, 3] == pytest.approx(300e-6)
    r = ConductanceMapping(mode="reference").encode(w).targets
    assert r.shape == (2, 4)
    np.testing.assert_allclose(r[:, -1], 300e-6)
    assert r[0, 0] == pytest.approx(G_MAX) and r[0, 2] == pytest.approx(G_MIN)


@pytest.mark.parametrize("mode,split", CONFIGS)
def test_batched_decode(mode, split):
    m = ConductanceMapping(mode=mode, split=split, w_max=4.0)
    w = _w((4, 6), seed=1)
    mw = m.encode(w)
    rng = np.random.default_rng(2)
    g = mw.targets + rng.normal(scale=1e-6, size=(7, 2) + mw.targets.shape)
    out = mw.decode(g)
    assert out.shape == (7, 2, 4, 6)
    for idx in np.ndindex(7, 2):
        np.testing.assert_allclose(out[idx], mw.decode(g[idx]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mw.decode(np.broadcast_to(mw.targets, (3,) + mw.targets.shape)),
                               np.broadcast_to(w, (3, 4, 6)), atol=1e-12)


@pytest.mark.parametrize("mode,split", CONFIGS)
def test_scale_is_right(mode, split):
    m = ConductanceMapping(mode=mode, split=split, w_max=2.0)
    mw = m.encode(np.zeros((2, 3)) + 0.1)
    span = G_MAX - G_MIN if mode == "differential" else (G_MAX - G_MIN) / 2
    assert mw.scale == pytest.approx(2.0 / span)
    g = mw.targets.copy()
    col = 2 * 1 if mode == "differential" else 1  # G+ (or G) of output 1
    g[2, col] += 1e-6  # input 2
    delta = mw.decode(g) - mw.decode(mw.targets)
    expected = np.zeros((2, 3))
    expected[1, 2] = mw.scale * 1e-6
    np.testing.assert_allclose(delta, expected, atol=1e-12)
    if mode == "differential":  # +1 µS on G- decreases w
        g = mw.targets.copy()
        g[0, 1] += 1e-6
        assert (mw.decode(g) - mw.decode(mw.targets))[0, 0] == pytest.approx(-mw.scale * 1e-6)
    else:  # raising the reference lowers the whole row (input) by the same amount
        g = mw.targets.copy()
        g[1, -1] += 1e-6
        d = mw.decode(g) - mw.decode(mw.targets)
        np.testing.assert_allclose(d[:, 1], -mw.scale * 1e-6)
        np.testing.assert_allclose(np.delete(d, 1, axis=1), 0, atol=1e-12)


def test_all_zero_weights_and_list_input():
    mw = ConductanceMapping().encode([[0.0, 0.0], [0.0, 0.0]])
    assert mw.w_max == 1.0
    np.testing.assert_allclose(mw.targets, G_MIN)
    mw = ConductanceMapping(mode="reference").encode([[0, 0]])
    np.testing.assert_allclose(mw.targets, 300e-6)


def test_w_max_exceeded_and_clip():
    w = np.array([[0.5, -3.0], [1.0, 0.0]])
    with pytest.raises(MappingError, match=r"weight -3\.0 at \(0, 1\) exceeds w_max=2\.0"):
        ConductanceMapping(w_max=2.0).encode(w)
    for mode, split in CONFIGS:
        mw = ConductanceMapping(mode=mode, split=split, w_max=2.0, clip=True).encode(w)
        assert mw.targets.min() >= G_MIN and mw.targets.max() <= G_MAX
        np.testing.assert_allclose(mw.decode(mw.targets), np.clip(w, -2, 2), atol=1e-12)


@pytest.mark.parametrize("bad,name", [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_nonfinite_weights(bad, name):
    w = np.ones((3, 4))
    w[2, 1] = bad
    with pytest.raises(MappingError, match=rf"{name}.*\(2, 1\)"):
        ConductanceMapping().encode(w)


def test_shape_errors():
    m = ConductanceMapping()
    with pytest.raises(MappingError, match="2-D"):
        m.encode(np.ones(4))
    with pytest.raises(MappingError, match="2-D"):
        m.encode(np.ones((2, 3, 4)))
    with pytest.raises(MappingError, match="real"):
        m.encode(np.ones((2, 2), dtype=complex))
    mw = m.encode(np.ones((3, 4)))
    with pytest.raises(MappingError, match=r"\(\.\.\., 4, 6\), got \(4, 7\)"):
        mw.decode(np.full((4, 7), 2e-4))
    with pytest.raises(MappingError, match=r"got \(6,\)"):
        mw.decode(np.full(6, 2e-4))
    g = mw.targets.copy()
    g[1, 3] = np.nan
    with pytest.raises(MappingError, match=r"NaN at index \(1, 3\)"):
        mw.decode(g)
    with pytest.raises(MappingError, match="mode"):
        ConductanceMapping(mode="reference").decode(mw.targets, mw)


def test_constructor_validation():
    with pytest.raises(MappingError, match="g_min"):
        ConductanceMapping(g_min=-1e-6)
    with pytest.raises(MappingError, match="g_max"):
        ConductanceMapping(g_max=float("inf"))
    with pytest.raises(MappingError, match="g_min.*< g_max"):
        ConductanceMapping(g_min=500e-6, g_max=100e-6)
    with pytest.raises(MappingError, match="mode"):
        ConductanceMapping(mode="single")
    with pytest.raises(MappingError, match="split"):
        ConductanceMapping(split="two-sided")
    with pytest.raises(MappingError, match="w_max"):
        ConductanceMapping(w_max=0.0)


def test_custom_window():
    m = ConductanceMapping(g_min=10e-6, g_max=50e-6, split="balanced")
    mw = m.encode(_w(seed=3))
    assert mw.targets.min() >= 10e-6 and mw.targets.max() <= 50e-6
    np.testing.assert_allclose(mw.decode(mw.targets), _w(seed=3), atol=1e-12)


def test_check_targets():
    t = np.full((5, 6), 300e-6)
    out = check_targets(t.tolist(), G_MIN, G_MAX, shape=(5, 6))
    assert isinstance(out, np.ndarray) and out.dtype == float
    t[3, 4] = 612e-6
    with pytest.raises(MappingError,
                       match=r"target 612\.0 µS at \(3, 4\) is outside the programming window 100–500 µS"):
        check_targets(t, G_MIN, G_MAX)
    t[3, 4] = 50e-6
    with pytest.raises(MappingError, match=r"50\.0 µS at \(3, 4\)"):
        check_targets(t, G_MIN, G_MAX)
    with pytest.raises(MappingError, match=r"shape \(5, 6\), expected \(5, 7\)"):
        check_targets(np.full((5, 6), 3e-4), G_MIN, G_MAX, shape=(5, 7))
    # any ndim
    check_targets(np.full((2, 3, 4), 2e-4), G_MIN, G_MAX)
    t3 = np.full((2, 3, 4), 2e-4)
    t3[1, 2, 0] = 1e-3
    with pytest.raises(MappingError, match=r"\(1, 2, 0\)"):
        check_targets(t3, G_MIN, G_MAX)
    # NaN = untargeted cell, only if allowed; Inf never
    t = np.full((2, 2), 2e-4)
    t[0, 1] = np.nan
    with pytest.raises(MappingError, match=r"NaN at index \(0, 1\)"):
        check_targets(t, G_MIN, G_MAX)
    out = check_targets(t, G_MIN, G_MAX, allow_nan=True)
    assert np.isnan(out[0, 1]) and out[1, 1] == 2e-4
    t[1, 0] = np.inf
    with pytest.raises(MappingError, match=r"Inf at index \(1, 0\)"):
        check_targets(t, G_MIN, G_MAX, allow_nan=True)
    # tolerance
    check_targets(np.array([500e-6 + 1e-12]), G_MIN, G_MAX, atol=1e-9)


def test_per_output_scales_round_trip_and_use_the_whole_window():
    w = np.array([[8.0, -2.0, 1.0], [0.2, 0.1, -0.4]])
    mw = ConductanceMapping(per_output=True).encode(w)
    assert mw.w_max.tolist() == [8.0, 0.4]
    assert mw.scale.tolist() == pytest.approx([8.0 / 400e-6, 0.4 / 400e-6])
    # each output's largest weight reaches g_max on its own column pair
    assert mw.targets[:, 0:2].max() == pytest.approx(500e-6) and mw.targets[:, 2:4].max() == pytest.approx(500e-6)
    np.testing.assert_allclose(mw.decode(mw.targets), w, rtol=1e-12)
    np.testing.assert_allclose(mw.decode(np.stack([mw.targets] * 3)), np.stack([w] * 3), rtol=1e-12)


def test_per_output_given_w_max_clips_or_names_the_weight():
    w = np.array([[8.0, -2.0], [0.2, 0.5]])
    with pytest.raises(MappingError, match=r"0\.5 at \(1, 1\) exceeds w_max=0\.4"):
        ConductanceMapping(per_output=True, w_max=(10.0, 0.4)).encode(w)
    mw = ConductanceMapping(per_output=True, w_max=(10.0, 0.4), clip=True).encode(w)
    np.testing.assert_allclose(mw.decode(mw.targets), [[8.0, -2.0], [0.2, 0.4]], rtol=1e-12)
    with pytest.raises(MappingError, match="2 w_max values for 3 outputs"):
        ConductanceMapping(per_output=True, w_max=(1.0, 1.0)).encode(np.ones((3, 2)))
    with pytest.raises(MappingError, match="needs per_output=True"):
        ConductanceMapping(w_max=(1.0, 2.0))
    with pytest.raises(MappingError, match="finite and > 0"):
        ConductanceMapping(per_output=True, w_max=(1.0, -2.0))
