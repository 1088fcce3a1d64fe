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
