"""Fault injection (issue 12): one test per reported case, each asserting the end state through the
emulators' record (no output on, no relay closed, no violation), that no record is lost, and the
message.  Deterministic: faults are triggered by the test itself (a signal raised from inside the
sequence, a bench closed between two operations), never by timing."""
from __future__ import annotations

import json
import re
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
            xb.pulse(0, 0, 1.5, 5e-5, scheme="v/3")
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


# ------------------------------------------- cases 5, 8, 9: bad input, before any run folder
def _bad_targets(tmp_path) -> dict:
    import struct

    import numpy as np

    files = {}
    for name, arr in (("shape", np.full((3, 4), 3e-4)), ("inf", np.full((4, 4), np.inf)),
                      ("microsiemens", np.full((4, 4), 300.0)), ("all-nan", np.full((4, 4), np.nan))):
        np.save(tmp_path / f"{name}.npy", arr)
        files[name] = tmp_path / f"{name}.npy"
    (tmp_path / "t.csv").write_text("1,2\n")
    (tmp_path / "text.npy").write_text("300e-6 300e-6\n")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    hdr = "{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }"
    hdr += " " * (63 - (len(hdr) + 10) % 64) + "\n"
    (tmp_path / "huge.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
    files.update(csv=tmp_path / "t.csv", text=tmp_path / "text.npy", objects=tmp_path / "objects.npy",
                 huge=tmp_path / "huge.npy", missing=tmp_path / "missing.npy")
    return files


@pytest.mark.parametrize("case, extra, message", [
    ("shape", [], r"has shape \(3, 4\); expected \(4, 4\)"),
    ("inf", [], r"Inf"),
    ("all-nan", [], r"no cell has a finite target"),
    ("microsiemens", [], r"look like µS .*divide them by 1e6"),
    ("csv", [], r"--targets must be 'random' or a .npy file"),
    ("text", [], r"is not a .npy array file"),
    ("objects", [], r"holds Python objects, which xbarlab never loads"),
    ("huge", [], r"has shape \(100000, 100000\)"),
    ("missing", [], r"does not exist"),
    (None, ["--size", "100000x100000"], r"would need about .* GiB of memory"),
    (None, ["--tolerance", "-0.1"], r"--tolerance -0.1: must be between 0.0001 and 0.49"),
    (None, ["--line-resistance", "nan"], r"--line-resistance nan: must be a finite number"),
])
def test_cases_5_8_9_bad_input_is_one_line_before_any_run_folder(tmp_path, capsys, case, extra, message):
    import re

    from procedures.cli import main

    args = ["tune", "--size", "4x4", "--out", str(tmp_path / "run"), "--quiet", "--no-plots", *extra]
    if case is not None:
        args += ["--targets", str(_bad_targets(tmp_path)[case])]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert "--resume" not in err and "allow_pickle" not in err and "weights_only" not in err
    assert not (tmp_path / "run").exists(), "no run folder for bad input"


def test_case8_size_larger_than_the_station_is_refused_before_opening(bench, station, tmp_path, capsys):
    from procedures.cli import main

    assert main(["tune", "--station", str(station), "--size", "16x16", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--size 16x16 is larger than the station's 4x4 array" in err and "--resume" not in err
    assert not (tmp_path / "run").exists()
    assert all(len(emu.log) == 0 for emu in bench.emulators.values()), "nothing was even connected"


def test_case9_line_resistance_with_chip_from_is_refused(tmp_path, capsys):
    from procedures.cli import main

    first = tmp_path / "first"
    assert main(["read", "--size", "3x3", "--out", str(first), "--quiet", "--no-plots"]) == 0
    assert main(["read", "--chip-from", str(first), "--line-resistance", "2.5", "--out", str(tmp_path / "b"),
                 "--quiet", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "--line-resistance 2.5 cannot be combined with --chip-from" in err
    assert not (tmp_path / "b").exists()


# ------------------------------------------------ cases 3, 4: storage faults, resume recovery
def _tune(tmp_path, out, *extra):
    from procedures.cli import main

    return main(["tune", "--size", "4x4", "--seed", "3", "--parallel", "1", "--passes", "1", "--out", str(out),
                 "--quiet", "--no-plots", *extra])


def _resume(out):
    from procedures.cli import main

    return main(["tune", "--resume", str(out), "--quiet", "--no-plots"])


def _each_cell_once(out, cells=16):
    from procedures.storage.run_data import load_run

    r = load_run(out)
    p0 = r.data[(r.data["Stage"] == "tune") & (r.data["Pass"] == 0)]
    assert r.status == "finished" and len(p0) == cells and not p0[["Row", "Col"]].duplicated().any()
    return r


def test_case3_disk_full_mid_run(tmp_path, monkeypatch, capsys):
    """The disk fills after the 5th record: one line naming the fault, run.json marked failed (in
    place: no new file fits), no .tmp left, no run.h5 cut short; after space is freed the resume
    reports every cell once."""
    import errno
    import shutil

    import procedures.storage.run_data as run_data
    import procedures.storage.runner as runner

    out = tmp_path / "run"
    real_open, full = open, []

    def after_record(n):
        if n == 5:
            full.append(True)
            raise OSError(errno.ENOSPC, "No space left on device")

    def open_on_full_disk(path, mode="r", *a, **kw):
        if full and ("w" in mode or "a" in mode) and not Path(path).exists():
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *a, **kw)

    from collections import namedtuple
    from pathlib import Path

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(runner, "after_record", after_record)
    monkeypatch.setattr(run_data, "open", open_on_full_disk, raising=False)
    real_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1, 1, 0) if full else real_usage(p))
    assert _tune(tmp_path, out) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("xbar tune: error: storage fault: No space left on device"), err
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "failed" and "No space left" in meta["error"]
    assert not list(out.rglob("*.tmp")) and not (out / "run.h5").exists()
    monkeypatch.undo()                                    # space freed
    assert _resume(out) == 0
    _each_cell_once(out)


def test_case3_truncated_run_h5_is_refused_not_a_crash(tmp_path):
    from procedures.storage.run_data import RunFolderError, load_run

    out = tmp_path / "run"
    assert _tune(tmp_path, out) == 0
    data = (out / "run.h5").read_bytes()
    (out / "run.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunFolderError, match="run.h5 is incomplete"):
        load_run(out)


@pytest.mark.parametrize("journal", ["data.csv", "journal/passes-tune.jsonl"])
def test_case4_corrupt_journal_resumes_from_the_valid_records(tmp_path, stop_after, capsys, journal):
    """Random bytes in the middle of a journal: the resume names the file and line it set aside
    (kept in <file>.dropped) and reports every cell once."""
    out = tmp_path / "run"
    stop_after(60)          # mid-run, with at least two tuned cells in the journal (the second is corrupted)
    assert _tune(tmp_path, out) == 130
    stop_after(None)
    path = out / journal
    lines = path.read_bytes().split(b"\n")
    assert journal != "data.csv" or sum(line.startswith(b"tune,") for line in lines) >= 2
    k = next(i for i, line in enumerate(lines) if line.startswith(b"tune,")) + 1 if journal == "data.csv" else 0
    lines[k] = b"\xff\xfe\x00garbage\x93" + lines[k][5:]
    path.write_bytes(b"\n".join(lines))
    capsys.readouterr()
    assert _resume(out) == 0
    err = capsys.readouterr().err
    name = path.name
    assert f"resume: {name}: dropped unreadable line {k + 1} (kept in {name}.dropped)" in err, err
    assert (path.parent / f"{name}.dropped").read_bytes().startswith(b"\xff\xfe")
    _each_cell_once(out)


def test_case4_deleted_chip_state_refuses_the_resume(tmp_path, stop_after, capsys):
    out = tmp_path / "run"
    stop_after(40)
    assert _tune(tmp_path, out) == 130
    stop_after(None)
    (out / "chip_state.npz").unlink()
    capsys.readouterr()
    assert _resume(out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "chip_state.npz) is missing" in err and "continue with" not in err
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted", "the run is left as it was"


def test_case4_deleted_population_file_refuses_the_resume_in_one_line(tmp_path, stop_after, capsys):
    out = tmp_path / "run"
    stop_after(40)
    assert _tune(tmp_path, out) == 130
    stop_after(None)
    [pop] = out.glob("chip_state.population-*.npz")
    pop.unlink()
    capsys.readouterr()
    assert _resume(out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"population ({pop.name}) is missing" in err and "continue with" not in err, err
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted", "the run is left as it was"


def test_case4_two_processes_on_one_run_folder(tmp_path, stop_after, capsys):
    from procedures.storage.runner import run_lock

    out = tmp_path / "run"
    stop_after(10)
    assert _tune(tmp_path, out) == 130
    stop_after(None)
    before = (out / "data.csv").read_bytes()
    with run_lock(out):                                  # another process is writing this folder
        capsys.readouterr()
        assert _resume(out) == 2
        err = capsys.readouterr().err.strip()
        assert "is being written by another xbar process" in err and len(err.splitlines()) == 1
    assert (out / "data.csv").read_bytes() == before
    assert _resume(out) == 0
    _each_cell_once(out)


@pytest.mark.parametrize("who, switch, message", [
    ("pulser", "enable", "output is off after it was enabled"),
    ("drive", "disable", "output still on before the generator's pulse"),
])
def test_generator_pulse_confirms_every_output_change(bench, tmp_path, monkeypatch, who, switch, message):
    """A write through the 33512B hands the lines from the SMUs to the generator and back, each
    change confirmed by a query: an output that ignores its command (the generator not coming
    on; the drive not going off before the pulse) stops the write with the instrument named and
    no pulse given, and the bench is left safe."""
    xb = HardwareCrossbar(load_station(bench.write_station(tmp_path / "st.toml", variant="k2600-707b",
                                                           timeout_ms=30000)))
    ch = xb.pulser if who == "pulser" else xb.ch["drive"]
    ignored = []
    monkeypatch.setattr(ch, switch, lambda: ignored.append(ch.name), raising=False)
    with pytest.raises(InstrumentError, match=re.escape(f"{ch.name}: {message}")):
        xb.pulse(0, 1, 1.2, 1e-6)
    monkeypatch.undo()
    assert ignored and bench.bench.pulses == 0, "no pulse reached the array"
    xb.close()
    assert_safe(bench)
