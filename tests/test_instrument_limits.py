"""Instrument limits from the manuals: one record per model, read generically, narrowing a
station's limits before anything runs; the drivers refuse what their model cannot do."""
from __future__ import annotations

import pytest

from instruments.hardware_crossbar import station_limits
from instruments.keithley2450 import Keithley2450
from instruments.keithley2600 import Keithley2600
from instruments.keithley707b import Keithley707B
from instruments.keysight_33500b import Keysight33500B
from instruments.keysight_b2200 import KeysightB2200
from instruments.keysight_b2900 import KeysightB2900
from instruments.limits import MatrixLimits, SourceLimits, limits_for
from instruments.station import parse_station
from instruments.switch_board import SwitchBoard

SOURCES = (Keithley2450, Keithley2600, KeysightB2900, Keysight33500B)
MATRICES = (Keithley707B, KeysightB2200, SwitchBoard)


@pytest.mark.parametrize("driver", SOURCES + MATRICES)
def test_every_driver_states_its_models_limits_with_their_document(driver):
    assert driver.DEFAULT_MODEL in driver.MODEL_LIMITS
    kind = SourceLimits if driver in SOURCES else MatrixLimits
    for model, lim in driver.MODEL_LIMITS.items():
        assert isinstance(lim, kind) and lim.model.startswith(model.split()[0]) and len(lim.document) > 20


def test_records_hold_the_manuals_figures():
    assert limits_for(Keithley2600, "Keithley Instruments Inc., Model 2636B, 1").pulse_width[0] == 100e-6
    assert limits_for(Keithley2600, "2602B").voltage == (-40.0, 40.0)
    assert limits_for(KeysightB2900, "Keysight Technologies,B2912A,x").pulse_period_min == 10e-6
    assert limits_for(KeysightB2900, "").model == "B2902A"            # unknown: the family default
    assert limits_for(KeysightB2900, "B2902A").pulse_width == (50e-6, 100_000.0)
    assert limits_for(Keithley2450, "2450").pulse_width is None        # no pulse mode
    assert limits_for(Keysight33500B, "33522B").pulse_width[0] == 16e-9
    assert limits_for(KeysightB2200, "B2200A").outputs == 12 and limits_for(Keithley707B, "707B").cards == 6


def _station(drive: str, extra: str = "", pulse: str = "", width_min: float = 1e-7, v_max: float = 2.5) -> str:
    insts = {"smu": ("keithley2600", "2636B"), "b29": ("keysight_b2900", "B2902A"), "k24": ("keithley2450", "2450"),
             "gen": ("keysight_33500b", "33512B"), "matrix": ("keithley707b", "707B")}
    text = (f'[station]\nrows = 2\ncols = 2\nwrite_scheme = "float"\n[limits]\nv_max = {v_max}\nv_read_max = 0.5\n'
            f'i_compliance = 1e-3\nwidth_min = {width_min}\nwidth_max = 1e-3\n')
    for name, (driver, ident) in insts.items():
        text += f'[instruments.{name}]\ndriver = "{driver}"\nresource = "TCPIP::192.0.2.1::5025::SOCKET"\nidentity = "{ident}"\n'
    inputs = {"smu.a": "A", "smu.b": "B", "b29.1": "C", "k24.1": "D", "gen.1": "G"}
    text += (f'[routing]\nmatrix = "matrix"\ndrive = "{drive}"\nsense = "smu.b"\n{pulse}\n'
             "inputs = { " + ", ".join(f'"{k}" = "{v}"' for k, v in inputs.items()) + " }\n"
             'row_pins = ["101", "102"]\ncol_pins = ["201", "202"]\n' + extra)
    return text


@pytest.mark.parametrize("drive, pulse, width_min", [
    ("smu.a", "", 100e-6),                   # 2600B: pulses specified from 100 µs
    ("b29.1", "", 50e-6),                    # B2900: 50 µs
    ("k24.1", "", 1e-7),                     # 2450: no pulse mode (DC steps), not narrowed
    ("smu.a", 'pulse = "gen.1"', 1e-7),      # 33512B gives the pulses: 16 ns, the file's 100 ns
])
def test_station_limits_narrow_to_the_write_instrument(drive, pulse, width_min):
    lim = station_limits(parse_station(_station(drive, pulse=pulse)))
    assert lim.width_min == pytest.approx(width_min) and lim.width_max == 1e-3


def test_no_overlap_is_refused_naming_instrument_and_document():
    st = parse_station(_station("smu.a", width_min=1e-7).replace("width_max = 1e-3", "width_max = 5e-5"))
    with pytest.raises(ValueError, match=r"smu \(2636B\)'s 0.0001\.\.10 s do not overlap \(Series 2600B"):
        station_limits(st)


def test_pulse_role_must_be_a_generator_and_smu_roles_must_not_be():
    from instruments.station import StationError

    with pytest.raises(StationError, match="pulse = 'b29.1' must be a pulse generator"):
        parse_station(_station("smu.a", pulse='pulse = "b29.1"'))
    with pytest.raises(StationError, match="is a pulse generator"):
        parse_station(_station("gen.1"))
