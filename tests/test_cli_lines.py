"""`--line-resistance 0` selects ideal lines on the simulated chip, whatever the preset."""
import json

import numpy as np

from mock_hw.presets import DEFAULT_PRESET, PRESETS


def _r_line(run) -> float:
    with np.load(run / "chip_state.npz", allow_pickle=False) as z:
        return json.loads(str(z["meta"]))["r_line"]


def test_line_resistance_zero_means_ideal_lines_and_not_given_the_preset_s(tmp_path, capsys):
    from procedures.cli import main

    assert PRESETS[DEFAULT_PRESET].r_line > 0          # the default preset has resistive lines
    base = ["read", "--size", "3x3", "--quiet", "--no-plots"]
    assert main([*base, "--out", str(tmp_path / "preset")]) == 0
    assert main([*base, "--line-resistance", "0", "--out", str(tmp_path / "ideal")]) == 0
    assert main([*base, "--line-resistance", "1.5", "--out", str(tmp_path / "given")]) == 0
    assert _r_line(tmp_path / "preset") == PRESETS[DEFAULT_PRESET].r_line
    assert _r_line(tmp_path / "ideal") == 0.0 and _r_line(tmp_path / "given") == 1.5
    params = json.loads((tmp_path / "ideal" / "run.json").read_text())["parameters"]
    assert params["ideal_lines"] is True
    # a continuation on that chip keeps its ideal lines; asking for them on a chip with lines is refused
    assert main(["read", "--chip-from", str(tmp_path / "ideal"), "--out", str(tmp_path / "again"),
                 "--quiet", "--no-plots"]) == 0
    assert _r_line(tmp_path / "again") == 0.0
    capsys.readouterr()
    assert main(["read", "--chip-from", str(tmp_path / "preset"), "--line-resistance", "0",
                 "--out", str(tmp_path / "clash"), "--quiet", "--no-plots"]) == 2
    assert "cannot be combined with --chip-from" in capsys.readouterr().err
    assert not (tmp_path / "clash").exists()


def test_a_bad_line_resistance_is_one_line_before_any_run_folder(tmp_path, capsys):
    from procedures.cli import main

    for bad in ("-1", "inf"):
        assert main(["tune", "--size", "3x3", "--line-resistance", bad, "--out", str(tmp_path / "run"),
                     "--quiet", "--no-plots"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--line-resistance" in err, err
        assert not (tmp_path / "run").exists()
    assert "0: ideal lines" in " ".join(_help(capsys).split())


def _help(capsys) -> str:
    import pytest

    from procedures.cli import main

    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    return capsys.readouterr().out
