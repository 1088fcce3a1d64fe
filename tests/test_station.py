"""Station files: a valid one parses; every kind of mistake is refused naming the key."""
from __future__ import annotations

import pytest

from instruments.station import StationError, load_station, parse_station

GOOD = """
[station]
name = "bench"
rows = 2
cols = 3
write_scheme = "v/2"
v_read = 0.2

[limits]
v_max = 2.5
v_read_max = 0.5
i_compliance = 1e-3
width_min = 1e-7
width_max = 1e-3

[instruments.smu]
driver = "keithley2600"
resource = "TCPIP::127.0.0.1::5025::SOCKET"
identity = "2636B"

[instruments.bias]
driver = "keysight_b2900"
resource = "TCPIP::127.0.0.1::5026::SOCKET"
identity = "B2902A"

[instruments.matrix]
driver = "keithley707b"
resource = "TCPIP::127.0.0.1::5027::SOCKET"
identity = "707B"

[routing]
matrix = "matrix"
drive = "smu.a"
sense = "smu.b"
bias_rows = "bias.1"
bias_cols = "bias.2"
inputs = { "smu.a" = "A", "smu.b" = "B", "bias.1" = "C", "bias.2" = "D" }
row_pins = ["101", "102"]
col_pins = ["201", "202", "203"]
"""


def test_good_station_parses():
    st = parse_station(GOOD, "good.toml")
    assert (st.rows, st.cols, st.write_scheme, st.v_read) == (2, 3, "v/2", 0.2)
    assert st.limits.v_max == 2.5 and st.limits.i_compliance == 1e-3
    assert st.channel_of("drive") == ("smu", "a")
    assert st.instruments["matrix"].is_matrix and not st.instruments["smu"].is_matrix
    table = dict(st.routing_table())
    assert table["row 1"] == "matrix pin 102" and table["drive (smu.a)"] == "matrix input A"


@pytest.mark.parametrize("old, new, message", [
    ("[routing]", "[routingx]", r"unknown key 'routingx'"),
    ('driver = "keithley2600"', 'driver = "keithley9999"', r"\[instruments.smu\] driver = 'keithley9999' is unknown"),
    ('drive = "smu.a"', 'drive = "smu.c"', r"\[routing\] drive = 'smu.c': smu \(keithley2600\) has no source channel 'c'"),
    ('drive = "smu.a"', 'drive = "nope.a"', r"\[routing\] drive = 'nope.a' must be 'instrument.channel'"),
    ('sense = "smu.b"\n', "", r"\[routing\] sense is missing"),
    ('row_pins = ["101", "102"]', 'row_pins = ["101"]', r"row_pins must list 2 matrix pins"),
    ('col_pins = ["201", "202", "203"]', 'col_pins = ["201", "201", "203"]', r"col_pins repeats a pin"),
    ('col_pins = ["201", "202", "203"]', 'col_pins = ["201", "202", "101"]', r"both a row and a column: 101"),
    ('write_scheme = "v/2"', 'write_scheme = "v/5"', r"\[station\] write_scheme: unknown write scheme"),
    ('bias_cols = "bias.2"', 'bias_cols = "bias.1"', None),  # fine for v/2 ...
    ("v_read = 0.2", "v_read = 0.8", r"v_read = 0.8 V exceeds \[limits\] v_read_max"),
    ("v_max = 2.5", 'v_max = "high"', r"\[limits\] v_max must be a finite number"),
    # safety limits are required and must be deliverable by the instruments (issue 12, case 6)
    ("v_max = 2.5\n", "", r"\[limits\] v_max is missing"),
    ("width_max = 1e-3\n", "", r"\[limits\] width_max is missing"),
    ("v_max = 2.5", "v_max = 250", r"\[limits\] v_max = 250 V is beyond what the drive channel smu.a .* \(±200 V\)"),
    ("v_max = 2.5", "v_max = 1e308", r"\[limits\] v_max = 1e\+308 V is beyond"),
    ("v_max = 2.5", "v_max = nan", r"\[limits\] v_max must be a finite number"),
    ("i_compliance = 1e-3", "i_compliance = 5.0", r"i_compliance = 5 A is outside the .* compliance range"),
    ('identity = "2636B"\n', "", r"\[instruments.smu\] identity is missing"),
    # routing: distinct channels, relays that exist, resources that are resources
    ('sense = "smu.b"', 'sense = "smu.a"', r"\[routing\] sense = 'smu.a' is the same channel as drive"),
    ('bias_rows = "bias.1"', 'bias_rows = "smu.b"', r"\[routing\] bias_rows = 'smu.b' is the same channel as sense"),
    ('row_pins = ["101", "102"]', 'row_pins = ["101", "713"]', r"row_pins/col_pins: matrix \(keithley707b\) has no pin '713'"),
    ('"bias.2" = "D"', '"bias.2" = "Q"', r"inputs/ground: matrix \(keithley707b\) has no input 'Q'"),
    ('resource = "TCPIP::127.0.0.1::5025::SOCKET"', 'resource = "/home/me/bench.toml"',
     r"\[instruments.smu\] resource = '/home/me/bench.toml' is not an instrument resource"),
    ('resource = "TCPIP::127.0.0.1::5025::SOCKET"', 'resource = "192.0.2.1"', r"\[instruments.smu\] resource"),
    ("i_compliance = 1e-3", "i_compliance = -1e-3", r"\[limits\] SafetyLimits.i_compliance must be a positive"),
    ("rows = 2", "rows = 0", r"\[station\] rows must be an integer >= 1"),
    ('matrix = "matrix"', 'matrix = "smu"', r"matrix = 'smu' is not a switch-matrix instrument"),
    ('"bias.2" = "D"', '"bias.2" = "C"', r"two channels share one matrix input"),
    ('"smu.b" = "B", ', "", r"inputs has no entry for 'smu.b'"),
    ("[limits]", "[limits]\nvmax = 3", r"\[limits\] unknown key 'vmax'"),
    ("rows = 2", "rows = 2\nrows = 3", r"not valid TOML"),
])
def test_bad_station_names_the_key(old, new, message):
    text = GOOD.replace(old, new, 1)
    assert text != GOOD
    if message is None:
        parse_station(text)
        return
    with pytest.raises(StationError, match=message):
        parse_station(text, "bad.toml")


def test_v3_needs_two_bias_channels():
    text = GOOD.replace('write_scheme = "v/2"', 'write_scheme = "v/3"').replace('bias_cols = "bias.2"', 'bias_cols = "bias.1"')
    with pytest.raises(StationError, match="v/3.*distinct"):
        parse_station(text)


def test_write_schemes_are_those_the_bias_channels_serve():
    """What ``write_scheme="auto"`` may choose from: V/3 only with two distinct bias channels."""
    assert parse_station(GOOD).write_schemes == ("v/2", "v/3", "float")
    one = parse_station(GOOD.replace('bias_cols = "bias.2"', 'bias_cols = "bias.1"'))
    assert one.write_schemes == ("v/2", "float")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(StationError, match="cannot read"):
        load_station(tmp_path / "nope.toml")
    (tmp_path / "s.toml").write_text(GOOD)
    assert load_station(tmp_path / "s.toml").name == "bench"


def test_sample_station_files_load():
    from pathlib import Path

    from instruments.station import load_station

    folder = Path(__file__).resolve().parents[1] / "instruments" / "stations"
    names = sorted(p.name for p in folder.glob("*.toml"))
    assert names == ["b2902a_switchboard.toml", "k2636b_33500b_707b.toml", "k2636b_707b.toml"]
    from instruments.hardware_crossbar import station_limits

    # narrowed to the write instrument: the 2636B (100 µs), the 33512B (16 ns: the file's 100 ns),
    # the B2902A (50 µs)
    assert [station_limits(load_station(folder / n)).width_min for n in names] == [5e-5, 1e-7, 1e-4]
    g = load_station(folder / "k2636b_33500b_707b.toml")
    assert g.roles["pulse"] == "fgen.1" and g.inputs["fgen.1"] == "G"
    a = load_station(folder / "k2636b_707b.toml")
    assert a.instruments["smu"].driver == "keithley2600" and a.matrix == "matrix"
    b = load_station(folder / "b2902a_switchboard.toml")
    assert b.instruments["board"].driver == "switch_board" and b.roles["bias_rows"] == b.roles["bias_cols"]
