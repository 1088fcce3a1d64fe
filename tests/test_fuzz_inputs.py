"""Property-based fuzzing (issue 12) of the files an operator hands to xbar: station files, targets
files and model files.  Every example is either accepted or refused with one line that names the
file (and for a station file the key); never another exception, never advice to load unsafely.
Bounded and reproducible: a fixed number of examples, derandomized, no example database."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instruments.station import StationError, parse_station
from procedures.ops.chips import read_targets

FUZZ = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

GOOD = """[station]
name = "bench"
rows = 2
cols = 3
write_scheme = "v/2"
v_read = 0.2
timeout_ms = 2000

[limits]
v_max = 2.5
v_read_max = 0.5
i_compliance = 1e-3
width_min = 1e-6
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
resource = "GPIB0::18::INSTR"
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
LINES = GOOD.splitlines()
VALUE_LINES = [i for i, line in enumerate(LINES) if " = " in line]

toml_values = st.one_of(
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda x: {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(
        repr(x), repr(x))),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\\n\r'), max_size=30).map(
        lambda t: f'"{t}"'),
    st.sampled_from(["true", "false", "[]", '["101"]', "{}", '"smu.a"', '"smu.b"', '"bias.1"', '"/etc/passwd"',
                     '"socket://127.0.0.1:1"', '"v/3"', '"float"', "0", "-1", "1e308", "250", "1e-12"]),
)


@st.composite
def station_texts(draw):
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.sampled_from(VALUE_LINES))
        action = draw(st.sampled_from(["value", "drop", "garbage"]))
        key = lines[i].split(" = ", 1)[0]
        if action == "value":
            lines[i] = f"{key} = {draw(toml_values)}"
        elif action == "drop":
            lines[i] = ""
        else:
            lines[i] = draw(st.text(max_size=40).map(lambda t: t.replace("\n", " ")))
    return "\n".join(lines) + "\n"


@FUZZ
@given(station_texts())
def test_station_files_are_accepted_or_refused_naming_the_key(text):
    try:
        st_ = parse_station(text, "fuzz.toml")
    except StationError as exc:
        msg = str(exc)
        assert msg.startswith("station file fuzz.toml: ") and "\n" not in msg.strip(), msg
        return
    # accepted: then it is a station whose limits its instruments can deliver and whose routing is usable
    assert 0 < st_.limits.v_read_max <= st_.limits.v_max <= 200
    assert st_.roles["drive"] != st_.roles["sense"]
    assert len(set(st_.row_pins + st_.col_pins)) == st_.rows + st_.cols


arrays = st.one_of(
    st.builds(lambda v, shape: np.full(shape, v), st.floats(allow_nan=True, allow_infinity=True),
              st.sampled_from([(2, 3), (1, 2, 3), (3, 2), (2, 2, 3), (6,), ()])),
    st.builds(lambda seed, scale: np.random.default_rng(seed).uniform(0, scale, (2, 3)),
              st.integers(0, 2**16), st.sampled_from([1e-3, 600e-6, 1.0, 500.0])),
    st.builds(lambda k: np.full((2, 3), k), st.integers(-5, 10**6)),
    st.just(np.array(["a", "b"])),
)


@FUZZ
@given(kind=st.sampled_from(["array", "bytes", "truncated"]), arr=arrays, raw=st.binary(max_size=200),
       cut=st.integers(0, 200))
def test_targets_files_are_accepted_or_refused_in_one_line(tmp_path, kind, arr, raw, cut):
    path = tmp_path / "t.npy"
    if kind == "bytes":
        path.write_bytes(raw)
    else:
        np.save(path, arr)
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[:cut])
    try:
        t = read_targets(str(path), (2, 3), 1, (100e-6, 500e-6))
    except ValueError as exc:
        msg = str(exc)
        assert str(path) in msg and "\n" not in msg and "allow_pickle" not in msg, msg
        return
    assert t.shape == (1, 2, 3)
    finite = t[np.isfinite(t)]
    assert np.all((finite >= 100e-6) & (finite <= 500e-6)) and not np.isinf(t).any()


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    import torch

    from models.layers import MLP
    from models.model_io import save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "m.pt"
    save_model(path, MLP([2, 3, 1], "relu", "linear"))
    return path.read_bytes()


@FUZZ
@given(kind=st.sampled_from(["bytes", "truncated", "flipped", "payload"]), raw=st.binary(max_size=300),
       cut=st.integers(0, 4000), flip=st.integers(0, 4000),
       payload=st.dictionaries(st.sampled_from(["format", "version", "arch", "state_dict", "layer_options"]),
                               st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=3),
                                         st.just("xbarlab-model"), st.just({"sizes": [2, 1], "layers": ["Linear"],
                                                                           "activation": "relu"})), max_size=5))
def test_model_files_are_accepted_or_refused_in_one_line(tmp_path, model_bytes, kind, raw, cut, flip, payload):
    import torch

    from models.model_io import ModelError, load_model

    path = tmp_path / "m.pt"
    if kind == "bytes":
        path.write_bytes(raw)
    elif kind == "truncated":
        path.write_bytes(model_bytes[:cut % len(model_bytes)])
    elif kind == "flipped":
        b = bytearray(model_bytes)
        b[flip % len(b)] ^= 0xFF
        path.write_bytes(bytes(b))
    else:
        torch.save(payload, path)
    try:
        load_model(path)
    except ModelError as exc:
        msg = str(exc)
        assert str(path) in msg and "\n" not in msg.strip() and "weights_only" not in msg, msg
