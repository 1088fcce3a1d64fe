"""A tune run folder costs little per cell: records written a block at a time (the same text as
pymeasure's row by row), maps from what the run journaled in memory (the same as parsing data.csv
back), and a trace of the first chips of a batch only."""
from __future__ import annotations

import numpy as np
from pymeasure.experiment import Results

from procedures.cli import main
from procedures.ops.tune_array import TuneProcedure
from procedures.storage.journal import TRACE_CHIPS, read_events
from procedures.storage.run_data import load_run, write_h5, write_json
from procedures.storage.runner import format_table, table_parts
from programming.tune_state import TuneState


def test_block_of_records_is_written_as_pymeasure_writes_its_rows(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    block = {"Stage": "tune", "Pass": 2, "Chip": rng.integers(0, 9, n), "Row": rng.integers(0, 64, n),
             "Col": rng.integers(0, 64, n), "Target (S)": rng.uniform(1e-4, 5e-4, n),
             "Status": np.array(["converged", "stuck"] * (n // 2), dtype=object),
             "Reading (S)": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(1e-4, 5e-4, n)),
             "Pulses": rng.integers(0, 200, n), "Reads": rng.integers(0, 300, n),
             "Energy (J)": rng.uniform(0, 1e-6, n) * 10.0 ** rng.integers(-8, 3, n),
             "Instrument time (s)": rng.uniform(0, 2, n)}
    results = Results(TuneProcedure(), str(tmp_path / "data.csv"))
    rows = [{k: v if np.ndim(v) == 0 else v[i].item() if isinstance(v[i], np.generic) else v[i]
             for k, v in block.items()} for i in range(n)]
    expected = "".join(results.format(r) + "\n" for r in rows)
    assert format_table(results.formatter.columns, block) == expected
    # a part at a time (the runner's: a large block's rows are not all held as strings at once)
    parts = list(table_parts(block, rows=7))
    assert [len(p["Chip"]) for p in parts] == [7] * 7 + [1] and parts[3]["Stage"] == "tune"
    assert "".join(format_table(results.formatter.columns, p) for p in parts) == expected


def test_columns_of_repeating_numbers_are_written_as_pymeasure_writes_them(tmp_path):
    """A large block whose columns repeat a few values (a tune's instrument times, pulse and read
    counts, passes) has each distinct value formatted once: the same text, value for value,
    -0.0 apart from 0.0 and NaN as nan; columns of distinct values beside them."""
    rng = np.random.default_rng(2)
    n = 3000
    few = np.array([0.0, -0.0, np.nan, 0.009406999999999999, 1e-7, 2.5, 1e16, 3e-5])
    block = {"Stage": "tune", "Pass": rng.integers(0, 8, n).astype(np.int16), "Chip": rng.integers(0, 9000, n),
             "Row": rng.integers(0, 8, n), "Col": rng.integers(0, 8, n), "Target (S)": rng.uniform(1e-4, 5e-4, n),
             "Status": np.array(["converged", "stuck", "failed"] * (n // 3), dtype=object),
             "Reading (S)": rng.uniform(1e-4, 5e-4, n), "Pulses": rng.integers(0, 13, n).astype(np.int32),
             "Reads": rng.integers(-3, 13, n), "Energy (J)": rng.uniform(0, 1e-6, n),
             "Instrument time (s)": few[rng.integers(0, few.size, n)]}
    results = Results(TuneProcedure(), str(tmp_path / "data.csv"))
    rows = [{k: v if np.ndim(v) == 0 else v[i].item() if isinstance(v[i], np.generic) else v[i]
             for k, v in block.items()} for i in range(n)]
    expected = "".join(results.format(r) + "\n" for r in rows)
    text = format_table(results.formatter.columns, block)
    assert text == expected
    assert {"0.0", "-0.0", "nan", "1e+16"} <= {line.split(",")[-1] for line in text.splitlines()}


def test_integer_columns_from_the_table_of_texts_read_as_python_writes_them(monkeypatch):
    """Columns of small non-negative integers take their texts from a table made once and grown
    to the largest value seen; other integers (negative, beyond the table, a short column) are
    formatted one by one: the same text either way."""
    from procedures.storage import runner

    monkeypatch.setattr(runner, "_int_texts", [])
    rng = np.random.default_rng(5)
    columns = [rng.integers(0, 8, 600), rng.integers(0, 900, 600).astype(np.uint16),      # table of 1024
               rng.integers(0, 5000, 600).astype(np.int32),                               # grown
               rng.integers(0, runner.INT_TEXTS + 10, 600), rng.integers(-2, 3, 600), np.arange(10)]
    for a in columns:
        assert runner._number_texts(a) == list(map(str, a.tolist()))
    assert 5000 <= len(runner._int_texts[0]) <= runner.INT_TEXTS


def test_plots_at_the_end_of_a_run_see_the_arrays_run_h5_holds(tmp_path):
    rng = np.random.default_rng(1)
    maps = {"targets": rng.uniform(1e-5, 1e-4, (3, 4, 4)), "status": rng.integers(0, 5, (3, 4, 4)).astype(np.int8),
            "pulses": rng.integers(0, 9, (3, 4, 4)), "before": np.load(_saved(tmp_path, rng), mmap_mode="r")}
    trace = {"chip": np.zeros(5, np.int32), "reading": rng.uniform(size=5), "kind": np.ones(5, np.int8)}
    write_json(tmp_path / "run.json", {"procedure": "tune", "parameters": {}})
    write_h5(tmp_path / "run.h5", maps, trace, {})
    read, given = load_run(tmp_path), load_run(tmp_path, (maps, trace, {}))
    for a, b in ((read.maps, given.maps), (read.trace, given.trace)):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and np.array_equal(a[k], b[k]), k
    assert given.series == read.series == {} and load_run(tmp_path, ({}, None, {})).trace is None


def _saved(tmp_path, rng):
    np.save(tmp_path / "before.npy", rng.uniform(1e-5, 1e-4, (3, 4, 4)))
    return tmp_path / "before.npy"


def test_maps_from_the_journal_in_memory_equal_those_parsed_back_and_the_trace_is_bounded(tmp_path):
    chips = TRACE_CHIPS + 3
    run = tmp_path / "run"
    assert main(["tune", "--size", "3x3", "--chips", str(chips), "--seed", "2", "--out", str(run),
                 "--quiet", "--no-plots"]) == 0
    data = load_run(run)
    targets = np.load(run / "targets.npy")
    state = TuneState.from_events(targets, *read_events(run, "tune", targets.shape), rtol=np.inf)
    assert len(data.data) >= chips * 9                        # every cell's record is in data.csv
    np.testing.assert_array_equal(data.maps["pulses"], state.pulses)
    np.testing.assert_array_equal(data.maps["reads"], state.reads)
    assert (data.maps["pulses"] > 0).any() and (data.maps["reads"] > 0).all()
    # the trace holds every read and pulse of the first TRACE_CHIPS chips, none of the others
    assert set(np.unique(data.trace["chip"])) == set(range(TRACE_CHIPS))
    first = data.trace["chip"] == 0
    assert (data.trace["kind"][first] == 1).sum() == data.maps["pulses"][0].sum()


def test_journal_folds_events_per_cell_into_the_same_state(tmp_path):
    """The journal keeps one record per cell (sums over its events, its last status and pass), not
    every event: the state rebuilt from it equals the one every event gives, bit for bit."""
    from procedures.storage.journal import FileTuneLog

    rng = np.random.default_rng(4)
    shape = (5, 3, 4)
    targets = rng.uniform(1e-4, 5e-4, shape)
    targets[0, 0, 0] = np.nan
    log = FileTuneLog(tmp_path, lambda *a: None)
    journal = log.tune_kwargs("tune", targets)["journal"]
    raw = {k: [] for k in ("pass", "chip", "row", "col", "target", "status", "pulses", "reads", "energy", "time")}
    passes = []
    for p in range(3):
        todo = rng.random(shape) < 0.8
        passes.append((p, todo))
        journal.pass_started(p, todo)
        for _ in range(4):                              # cells finish in blocks, some in several passes
            k = rng.integers(1, 12)
            flat = rng.choice(np.flatnonzero(todo & np.isfinite(targets)), size=k, replace=False)
            chip, row, col = np.unravel_index(flat, shape)
            ev = {"pass": np.full(k, p), "chip": chip, "row": row, "col": col, "target": targets[chip, row, col],
                  "status": rng.integers(1, 5, k), "pulses": rng.integers(0, 50, k), "reads": rng.integers(1, 60, k),
                  "energy": rng.uniform(0, 1e-6, k) * 10.0 ** rng.integers(-6, 2, k), "time": rng.uniform(0, 1, k)}
            journal.cells_finished(p, chip, row, col, ev["target"], ev["status"], ev["target"], ev["pulses"],
                                   ev["reads"], ev["energy"], ev["time"])
            for key in raw:
                raw[key].append(ev[key])
    raw = {k: np.concatenate(v) for k, v in raw.items()}
    assert len(raw["chip"]) > len(np.unique(np.ravel_multi_index((raw["chip"], raw["row"], raw["col"]), shape)))
    folded = TuneState.from_events(targets, *journal.events(), rtol=np.inf)
    every = TuneState.from_events(targets, passes, raw, rtol=np.inf)
    for key in ("todo", "status", "pulses", "reads", "energy", "time"):
        np.testing.assert_array_equal(getattr(folded, key), getattr(every, key), err_msg=key)
    assert folded.pass_no == every.pass_no == 2
