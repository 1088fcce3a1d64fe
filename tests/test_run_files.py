"""run.h5 says what it holds: every dataset its unit, every array of codes its legend, and a read
its read voltage."""
from __future__ import annotations

import json

import h5py
import numpy as np

from procedures.cli import main
from procedures.ops.chips import open_chip
from procedures.storage.run_data import H5_UNITS
from programming.tune_result import STATUS_NAMES


def test_run_h5_carries_units_legends_and_read_voltages(tmp_path):
    out = tmp_path / "tune"
    assert main(["tune", "--size", "4x4", "--seed", "1", "--quiet", "--no-plots", "--out", str(out)]) == 0
    with h5py.File(out / "run.h5", "r") as f:
        for group in f:
            for name, d in f[group].items():
                assert d.attrs["units"] == H5_UNITS[group][name], (group, name)
        legend = json.loads(f["maps/status"].attrs["legend"])
        assert {int(k): v for k, v in legend.items()} == STATUS_NAMES
        assert json.loads(f["trace/kind"].attrs["legend"])["0"].startswith("read")
        assert f["maps/targets"].attrs["units"] == "S" and f["trace/amplitude"].attrs["units"] == "V"
        kind, amplitude = f["trace/kind"][()], f["trace/amplitude"][()]
    with open_chip("sim", (4, 4), "tio2-3it", 1) as xb:
        v_read = xb.v_read
    assert v_read > 0 and (kind == 0).any() and (kind == 1).any()
    np.testing.assert_allclose(amplitude[kind == 0], v_read)        # reads: the read voltage, not 0 V
    assert np.all(amplitude[kind == 1] != 0)


def test_data_csv_is_read_up_to_its_last_complete_line(tmp_path):
    """``xbar show`` of a running run reads data.csv while the run appends to it: a row half-written
    (cut mid-number, fields missing) is not read, and is read whole once its newline is there."""
    from procedures.storage.run_data import load_run, read_data_csv

    assert main(["tune", "--size", "3x3", "--seed", "1", "--quiet", "--no-plots", "--out", str(tmp_path / "run")]) == 0
    path = tmp_path / "run" / "data.csv"
    whole = read_data_csv(path)
    text = path.read_bytes()
    assert len(whole) >= 9 and text.endswith(b"\n")
    last = text.rstrip(b"\n").rfind(b"\n") + 1               # the last row starts here
    for cut in (last + 1, (last + len(text)) // 2, len(text) - 2):   # one character, half, all but a digit
        path.write_bytes(text[:cut])
        part = read_data_csv(path)
        assert part.equals(whole.iloc[:-1])                   # the rows before it, every value as written
    assert load_run(tmp_path / "run").data.equals(whole.iloc[:-1])
    path.write_bytes(text)
    assert read_data_csv(path).equals(whole)
    path.write_bytes(text[:text.index(b"Stage,Pass,") + 8])    # not even the labels line complete yet
    assert len(read_data_csv(path)) == 0


def test_run_h5_deflates_large_datasets_where_it_pays_and_reads_every_value_back(tmp_path):
    """Arrays of more than 4096 entries that deflate well are stored with HDF5's own filters
    (shuffle, then deflate: readable by any HDF5 library); measured conductances (random mantissas,
    which deflate hardly shrinks) and small arrays as they are; every value reads back bit for bit."""
    from procedures.storage.run_data import write_h5

    rng = np.random.default_rng(3)
    levels = np.array([np.nan, 1e-4, 2e-4, 3e-4])
    maps = {"final": rng.uniform(1e-5, 4e-4, (80, 8, 8)), "status": rng.integers(0, 5, (80, 8, 8)).astype(np.int8),
            "targets": levels[rng.integers(0, 4, (80, 8, 8))], "pulses": rng.integers(0, 60, (80, 8, 8)),
            "before": np.where(rng.random((2, 4, 4)) < 0.5, np.nan, 2e-4)}
    deflated = {"status": True, "targets": True, "pulses": True, "final": False, "before": False}
    write_h5(tmp_path / "run.h5", maps)
    with h5py.File(tmp_path / "run.h5", "r") as f:
        for name, value in maps.items():
            d = f["maps"][name]
            assert d.dtype == value.dtype and np.array_equal(d[()], value, equal_nan=True), name
            assert (d.compression, d.shuffle) == (("gzip", True) if deflated[name] else (None, False)), name
