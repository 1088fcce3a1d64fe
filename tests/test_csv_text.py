"""The compiled text of a results table is Python's, character for character: each float as
``repr`` writes it on the values where shortest-digit algorithms go wrong (zeros of either sign,
NaNs of any sign or payload, infinities, subnormals, the extremes, powers of two and of ten and
their neighbours (interval bounds, exact ties), decimals of 1-17 digits and the doubles next to
them, every exponent's layout boundary: 1e-05 / 0.0001, 1e+16 / 1000000000000000.0), each integer
as ``str`` (int64's extremes), and whole tables of mixed columns as pymeasure writes their rows."""
from __future__ import annotations

import numpy as np
import pytest

from procedures.storage import runner
from procedures.storage.csv_text import CONST, FLOAT, INT, TEXT, float_texts, table_text


def _python(a) -> list[str]:
    return list(map(repr, np.asarray(a).tolist()))


def _neighbours(x: np.ndarray) -> np.ndarray:
    x = x[np.isfinite(x)]
    return np.concatenate([x, np.nextafter(x, -np.inf), np.nextafter(x, np.inf), -x])


def _assert_same(a) -> None:
    got, want = float_texts(a), _python(a)
    assert len(got) == len(want)
    wrong = [(w, g) for g, w in zip(got, want) if g != w]
    assert not wrong, f"{len(wrong)} of {len(want)} differ from repr, e.g. {wrong[:5]}"


def test_special_values_as_repr_writes_them():
    nan_bits = np.array([0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001, 0xFFFFFFFFFFFFFFFF], np.uint64)
    special = np.concatenate([
        np.array([0.0, -0.0, np.inf, -np.inf, 5e-324, -5e-324, 2.2250738585072014e-308, 2.225073858507201e-308,
                  1.7976931348623157e308, -1.7976931348623157e308, 1e-300, 1e300, 0.1, 0.2, 0.30000000000000004,
                  1 / 3, 2 / 3, 9007199254740993.0, 9007199254740992.0, 4503599627370496.5, 0.009406999999999999,
                  123456789012345678.0, 1e22, 1e23, 5e-5, 1.5, 2.0, 100.0]),
        nan_bits.view(np.float64)])
    assert float_texts(special[:4]) == ["0.0", "-0.0", "inf", "-inf"]
    assert float_texts(nan_bits.view(np.float64)) == ["nan"] * 4
    _assert_same(special)


def test_layout_at_every_exponent_boundary():
    """Positional from 1e-04 to below 1e+16, exponent form outside, ``.0`` after integral values,
    two exponent digits at least (1e-05, 1e+16, 1e-300)."""
    tens = 10.0 ** np.arange(-323, 309)
    with np.errstate(over="ignore"):                    # (the largest, beyond the doubles: inf)
        values = np.concatenate([tens, 1.2345 * tens, 9.999999999999999 * tens, 5 * tens])
    _assert_same(_neighbours(values))
    assert float_texts(np.array([1e-4, 1e-5, 1e15, 1e16, 12.5, 1e-300])) == \
        ["0.0001", "1e-05", "1000000000000000.0", "1e+16", "12.5", "1e-300"]


def test_powers_of_two_and_subnormals_with_their_neighbours():
    twos = np.ldexp(1.0, np.arange(-1074, 1024))
    _assert_same(_neighbours(twos))
    rng = np.random.default_rng(3)
    subnormal = rng.integers(1, 1 << 52, 20000, dtype=np.uint64).view(np.float64)
    _assert_same(_neighbours(subnormal))
    _assert_same(np.arange(1, 2000, dtype=np.uint64).view(np.float64))        # the smallest subnormals


def test_decimals_of_15_to_17_digits_and_the_doubles_beside_them():
    """Rounding boundaries: a decimal of p digits read as a double, then the doubles one step
    either side (their shortest digits change length or round the other way)."""
    rng = np.random.default_rng(4)
    base = rng.uniform(1, 10, 3000) * 10.0 ** rng.integers(-310, 300, 3000)
    for p in (1, 2, 8, 15, 16, 17):
        _assert_same(_neighbours(np.array([float(f"{v:.{p - 1}e}") for v in base])))
    halves = (np.arange(1, 5000) + 0.5) * 10.0 ** rng.integers(-20, 20, 4999)     # ties one digit further
    _assert_same(_neighbours(halves))


def test_random_doubles_integers_and_narrower_floats():
    rng = np.random.default_rng(5)
    _assert_same(rng.integers(0, 2 ** 64, 300_000, dtype=np.uint64).view(np.float64))   # every exponent
    _assert_same(rng.uniform(1e-5, 5e-4, 100_000))                          # a tune's conductances
    _assert_same(rng.uniform(0, 1e-6, 100_000) * 10.0 ** rng.integers(-8, 3, 100_000))
    _assert_same(rng.integers(-2 ** 62, 2 ** 62, 100_000).astype(np.float64))
    f32 = rng.integers(0, 2 ** 32, 100_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    assert float_texts(f32) == _python(f32)                # (tolist gives the doubles they widen to)
    f16 = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    assert float_texts(f16) == _python(f16)
    strided = rng.uniform(size=1000)[::3]
    assert float_texts(strided) == _python(strided) and float_texts(np.array([])) == []


def test_refuses_what_is_not_a_1d_float_array():
    for bad in (np.zeros((2, 2)), np.arange(3), np.zeros(2, np.longdouble) if np.dtype(np.longdouble).itemsize > 8
                else np.zeros(2, complex)):
        with pytest.raises(TypeError):
            float_texts(bad)


def test_table_column_text_is_the_same_compiled_or_not(monkeypatch):
    """``_number_texts`` takes the compiled path for long float columns (numba loaded): the
    same text as Python's, with NaNs, zeros and repeats in the column."""
    import numba  # noqa: F401 - the compiled path is taken when numba is loaded

    rng = np.random.default_rng(6)
    a = rng.uniform(1e-5, 5e-4, 5000)
    a[::7], a[::11], a[::13] = np.nan, -0.0, np.inf
    compiled = runner._number_texts(a)
    monkeypatch.setattr(runner, "COMPILED_MIN", 10 ** 9)
    assert compiled == runner._number_texts(a) == _python(a)


def _adversarial_floats(rng, n: int) -> np.ndarray:
    pool = np.concatenate([[0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 5e-324, 1.7976931348623157e308, 1e-300,
                            1e-5, 1e-4, 1e15, 1e16, 0.1, 2.0, 0.009406999999999999],
                           _neighbours(10.0 ** np.arange(-30, 30)), rng.uniform(1e-5, 5e-4, 200)])
    return pool[rng.integers(0, pool.size, n)]


def test_rows_of_mixed_columns_compiled_are_the_rows_zipped_in_python(monkeypatch, tmp_path):
    """Every kind of column a table may hold, the compiled rows against the zipped texts (and a
    tune's table against pymeasure's row-by-row formatter)."""
    import numba  # noqa: F401 - the compiled path is taken when numba is loaded
    from pymeasure.experiment import Results

    from procedures.ops.tune_array import TuneProcedure

    rng = np.random.default_rng(7)
    n = 3000
    with np.errstate(over="ignore"):                    # (doubles beyond float32: inf)
        f32 = _adversarial_floats(rng, n).astype(np.float32)
    ints64 = rng.integers(-2 ** 63, 2 ** 63 - 1, n, dtype=np.int64, endpoint=True)
    ints64[:2] = -2 ** 63, 2 ** 63 - 1
    table = {"const": "tune", "int scalar": 3, "np scalar": np.int16(-7), "float scalar": 0.1, "0-d": np.array(2.5),
             "i64": ints64, "i8": rng.integers(-128, 128, n).astype(np.int8), "u8": rng.integers(0, 256, n).astype(np.uint8),
             "u32": rng.integers(0, 2 ** 32, n).astype(np.uint32), "small": rng.integers(0, 9, n),
             "u64": rng.integers(0, 2 ** 64, n, dtype=np.uint64), "bool": rng.random(n) < 0.5,
             "f64": _adversarial_floats(rng, n), "f32": f32,
             "repeats": np.array([0.0, -0.0, np.nan, 1e-7])[rng.integers(0, 4, n)],
             "status": np.array(["converged", "stuck", "échoué", ""], dtype=object)[rng.integers(0, 4, n)],
             "unicode": np.array(["a", "µS", "x,y"])[rng.integers(0, 3, n)],
             "ascii": np.array(["converged", "", "x,y", "stuck"])[rng.integers(0, 4, n)],      # (fixed width, as is)
             "strided": np.array(["disturbed", "a", ""])[rng.integers(0, 3, 2 * n)][::2]}
    columns = list(table) + ["missing"]
    compiled = runner.format_table(columns, table)
    monkeypatch.setattr(runner, "COMPILED_MIN", 10 ** 9)
    python = runner.format_table(columns, table)
    assert compiled == python
    assert compiled.splitlines()[0].startswith("tune,3,-7,0.1,2.5,-9223372036854775808,") and python.endswith(",nan\n")
    monkeypatch.undo()
    # a column of another length (rows zipped to the shortest) and a 2-D one: the Python path
    table["short"] = np.arange(n - 5)
    assert runner.format_table(columns + ["short"], table).count("\n") == n - 5

    tune = {"Stage": "tune", "Pass": 2, "Chip": rng.integers(0, 9000, n), "Row": rng.integers(0, 8, n),
            "Col": rng.integers(0, 8, n), "Target (S)": rng.uniform(1e-4, 5e-4, n),
            "Status": np.array(["converged", "stuck"] * (n // 2)),          # (as the journal gives them)
            "Reading (S)": _adversarial_floats(rng, n), "Pulses": rng.integers(0, 200, n),
            "Reads": rng.integers(-3, 300, n), "Energy (J)": rng.uniform(0, 1e-6, n) * 10.0 ** rng.integers(-8, 3, n),
            "Instrument time (s)": rng.uniform(0, 2, n)}
    results = Results(TuneProcedure(), str(tmp_path / "data.csv"))
    rows = [{k: v if np.ndim(v) == 0 else v[i].item() if isinstance(v[i], np.generic) else v[i]
             for k, v in tune.items()} for i in range(n)]
    assert runner.format_table(results.formatter.columns, tune) == "".join(results.format(r) + "\n" for r in rows)


def test_table_text_refuses_columns_of_the_wrong_kind_or_length():
    assert table_text(2, [(CONST, "a"), (INT, np.array([1, 2])), (FLOAT, np.array([0.5, 1e-9])),
                          (TEXT, ["x", "é"])]) == "a,1,0.5,x\na,2,1e-09,é\n"
    assert table_text(2, [(TEXT, np.array(["ab", ""])), (TEXT, np.array(["é", "x"]))]) == "ab,é\n,x\n"
    for bad in ([(FLOAT, np.arange(2))], [(INT, np.zeros(2))], [(INT, np.zeros(2, np.uint64))],
                [(FLOAT, np.zeros(3))], [(TEXT, ["x"])], [(TEXT, np.array(["x"]))]):
        with pytest.raises(TypeError):
            table_text(2, bad)


def test_a_new_process_loads_the_kernels_from_the_disk_cache():
    """Both kernels have one explicit signature and ``cache=True``: after a first process (which
    fills a cold cache), a new one compiles neither (a compile is ~6 s of CPU per kernel, which
    every simulated tune would pay)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    probe = "\n".join([
        "import json, numba, numpy as np",
        "from procedures.storage import csv_text as t",
        "t.float_texts(np.array([1.5])); t.table_text(1, [(t.FLOAT, np.array([0.5])), (t.INT, np.array([3]))])",
        "print(json.dumps({n: [sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]"
        " for n, f in (('texts', t._write_texts), ('table', t._write_table))}))"])
    root = Path(__file__).resolve().parents[1]

    def run():
        out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    run()
    stats = run()
    assert all(hits and not misses for hits, misses in stats.values()), stats
