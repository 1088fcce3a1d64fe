"""Fault injection (issue 12): one test per reported case, each asserting the end state through the
emulators' record (no output on, no relay closed, no violation), that no record is lost, and the
message.  Deterministic: faults are triggered by the test itself (a signal raised from inside the
sequence, a bench closed between two operations), never by timing."""
from __future__ import annotations

import json
import signal

import pytest

from instruments.hardware_crossbar import HardwareCrossbar
from instruments.roles import InstrumentConnectionError, InstrumentError
from instruments.safe_state import SafeSequence, deferred_signals
from instruments.station import StationError, load_station
from mock_hw.mock_bench import MockBench


def assert_safe(bench):
    rec = bench.bench.safety_record()
    assert rec["outputs_on"] == [] and rec["relays_closed"] == [], rec
    assert bench.violations == [], bench.violations[:3]


# ---------------------------------------------------------------- case 1: a second Ctrl-C
def test_case1_second_ctrl_c_cannot_cut_the_safe_state_short(bench, station, monkeypatch):
    """The second SIGINT arrives while the safe state runs (raised from inside its first step and
    again from inside the relay opening): it is held until every output is off and every relay is
    open and confirmed, then delivered."""
    xb = HardwareCrossbar(load_station(station))
    xb.read(1, 2)                                   # a routed cell: relays closed, outputs on
    assert bench.bench.safety_record()["relays_closed"]
    matrix = type(xb.matrix)
    real_open = matrix.open_all
    hits = []

    def open_all_interrupted(self):
        hits.append(1)
        signal.raise_signal(signal.SIGINT)          # Ctrl-C in the middle of the sequence
        return real_open(self)

    monkeypatch.setattr(matrix, "open_all", open_all_interrupted)
    with pytest.raises(KeyboardInterrupt):
        xb.close()
    assert hits, "the signal was raised inside the sequence"
    assert_safe(bench)
    assert xb.safe_report.ok and "matrix relays open" in xb.safe_report.text()


def test_deferred_signals_deliver_after_the_block_in_order():
    got = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: got.append("late"))
    try:
        with deferred_signals((signal.SIGUSR1,)):
            signal.raise_signal(signal.SIGUSR1)
            got.append("inside")
        assert got == ["inside", "late"]
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_safe_sequence_is_bounded_in_time():
    """No step starts after the budget; an instrument that lost its connection is not asked again."""
    now = [0.0]
    seq = SafeSequence(budget_s=10.0, clock=lambda: now[0])
    calls = []

    def lost():
        calls.append("lost")
        raise InstrumentConnectionError("smu at X: connection lost")

    assert seq.attempt("smu", lost)[0] is False
    assert seq.attempt("smu", lambda: calls.append("again")) == (False, "connection lost")
    now[0] = 11.0
    ran, why = seq.attempt("matrix", lambda: calls.append("late"))
    assert not ran and "time budget" in why and calls == ["lost"]


# ------------------------------------------------------- case 2: the instruments disappear
@pytest.mark.parametrize("variant", ["k2600-707b", "b2900-board"])
def test_case2_connection_loss_names_instrument_resource_command(tmp_path, variant):
    bench = MockBench(4, 4, seed=1)
    path = bench.write_station(tmp_path / "s.toml", variant=variant)
    st = load_station(path)
    xb = HardwareCrossbar(st)
    xb.read(0, 0)
    bench.close()                                   # the bench process is gone
    with pytest.raises(InstrumentConnectionError) as err:
        xb.read(1, 1)
    msg = str(err.value)
    drive = st.roles["drive"].partition(".")[0]
    assert msg.startswith(drive) and st.instruments[drive].resource in msg and "connection lost" in msg
    assert "'" in msg, "the command is quoted"
    text = xb.safe_report.text()
    assert "could not confirm" in text and "connection lost" in text and "confirmed " not in text.split(";")[0][:10]
    with pytest.raises(InstrumentConnectionError):
        xb.close()


def test_case2_refused_connection_names_the_instrument_and_resource(tmp_path):
    bench = MockBench(2, 2)
    path = bench.write_station(tmp_path / "s.toml")
    res = bench.resource("K2600")
    bench.servers["K2600"].close()                  # nothing answers at the smu's resource
    with pytest.raises(InstrumentConnectionError) as err:
        HardwareCrossbar(load_station(path))
    assert "smu" in str(err.value) and res in str(err.value), str(err.value)
    bench.close()                                   # every port closed: the serial board is refused at open
    with pytest.raises(InstrumentConnectionError, match=r"\[instruments\.\w+\] cannot connect to resource "):
        HardwareCrossbar(load_station(path))


def test_identity_mismatch_refuses_before_any_other_command(bench, tmp_path):
    text = bench.station_toml().replace('identity = "2636B"', 'identity = "2450"')
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(InstrumentError, match=r"\[instruments.smu\] identity '2450' does not match"):
        HardwareCrossbar(load_station(tmp_path / "s.toml"))
    assert all(m.strip() == "*IDN?" for m in bench.emulators["K2600"].log), bench.emulators["K2600"].log
    assert_safe(bench)


# --------------------------------------------- case 7: V/3 on a station with one bias channel
def test_case7_v3_on_one_bias_channel_is_refused_before_anything(bench, tmp_path):
    from procedures.ops.tune_array import TuneProcedure

    path = bench.write_station(tmp_path / "board.toml", variant="b2900-board")
    proc = TuneProcedure()
    proc.chip, proc.station, proc.scheme, proc.size = "station", str(path), "v/3", "4x4"
    with pytest.raises(StationError, match=r"--scheme = 'v/3' needs distinct .*use v/2"):
        proc.validate()
    with HardwareCrossbar(load_station(path)) as xb:
        with pytest.raises(StationError, match="write scheme = 'v/3'"):
            xb.pulse(0, 0, 1.5, 1e-6, scheme="v/3")
    assert bench.bench.pulses == 0
    assert_safe(bench)


# --------------------------------------------------- case 10: the mock bench's safety record
def test_case10_safety_record_is_flushed_as_events_happen(tmp_path):
    rec = tmp_path / "record.json"
    with MockBench(2, 2) as bench:
        bench.record_to(rec)
        assert json.loads(rec.read_text())["counts"] == {"hot-switch": 0, "short": 0, "limit": 0}
        bench.bench.set_source("K2600.a", level=1.0, on=True)
        bench.bench.set_relay("M707B", "A", bench.pin_707b("row", 0), True)   # a hot switch
        now = json.loads(rec.read_text())
        assert now["counts"]["hot-switch"] == 1 and now["running"] is True
        assert now["outputs_on"] == ["K2600.a"] and now["relays_closed"] == ["M707B:A-101"]
        bench.bench.set_source("K2600.a", level=0.0, on=False)
        bench.bench.open_all("M707B")
    final = json.loads(rec.read_text())
    assert final["running"] is False and final["outputs_on"] == [] and final["relays_closed"] == []
    assert not list(tmp_path.glob("*.tmp"))
