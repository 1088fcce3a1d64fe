"""The text of a results table (``data.csv`` rows), compiled: Python's ``repr`` of floats and
``str`` of integers, many at once, and whole rows of them.

``float_texts(a)`` is ``list(map(repr, a.tolist()))`` for a float array ``a``, character for
character: the shortest decimal digits that read back as the same double (the nearest such digits
when several are as short), written as Python writes them (``0.0001``, ``1e-05``, ``1e+16``,
``1234.5``, ``2.0``, ``-0.0``, ``nan``, ``inf``).  ``table_text`` writes the rows of a table of
float, integer and text columns, comma-separated, as ``",".join`` of those texts would.  A 10 000-chip
tune writes ~2 million floats to ``data.csv``; ``float.__repr__`` spends ~0.7-1 µs on each (~1.7 s
of the run), this ~0.1 µs.

The digits are Ryu's (Ulf Adams, "Ryū: fast float-to-string conversion", PLDI 2018; the
algorithm of ``d2s.c`` of github.com/ulfjack/ryu, without its small-integer shortcut and with
the 128-bit products written in 64-bit halves), which gives the shortest, nearest digits as
David Gay's ``dtoa`` mode 0 behind Python's ``repr`` does; the layout is CPython's
``float_repr_style`` 'short' (``Python/pystrtod.c``: exponent form when the decimal point falls
more than 16 places right or 4 left of the first digit, ``.0`` after an integral value, at least
two exponent digits).  tests/test_csv_text.py holds both to Python's text on adversarial values.

numba is imported here, and this module only when a table is formatted with numba loaded already
(never on ``xbar --help``'s path); the kernels are compiled once per checkout and cached on disk.
"""
from __future__ import annotations

import numpy as np
from numba import njit, types

_POW5_INV_BITCOUNT = 125
_POW5_BITCOUNT = 125
_POW5_INV_TABLE_SIZE = 342
_POW5_TABLE_SIZE = 326


def _tables() -> tuple[np.ndarray, np.ndarray]:
    """Ryu's tables of 5**i (125 significant bits, floored) and of 2**j / 5**i (ceiled), as
    (lo, hi) 64-bit words; made with Python's integers (the same values as ``d2s_full_table.h``)."""
    mask = (1 << 64) - 1
    pow5 = np.empty((_POW5_TABLE_SIZE, 2), np.uint64)
    for i in range(_POW5_TABLE_SIZE):
        p = 5 ** i
        shift = p.bit_length() - _POW5_BITCOUNT
        v = p >> shift if shift >= 0 else p << -shift
        pow5[i] = (v & mask, v >> 64)
    inv = np.empty((_POW5_INV_TABLE_SIZE, 2), np.uint64)
    for i in range(_POW5_INV_TABLE_SIZE):
        p = 5 ** i
        v = (1 << (p.bit_length() - 1 + _POW5_INV_BITCOUNT)) // p + 1
        inv[i] = (v & mask, v >> 64)
    return pow5, inv


_POW5, _POW5_INV = _tables()

_U = types.uint64
_M32 = np.uint64(0xFFFFFFFF)
_B32 = np.uint64(32)
_U0, _U1, _U2, _U4, _U5, _U10, _U48 = (np.uint64(k) for k in (0, 1, 2, 4, 5, 10, 48))


@njit(inline="always")
def _umul128(a, b):
    """(hi, lo) of the 128-bit product of two 64-bit words."""
    a_lo, a_hi = a & _M32, a >> _B32
    b_lo, b_hi = b & _M32, b >> _B32
    b00, b01, b10, b11 = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi
    mid1 = b10 + (b00 >> _B32)
    mid2 = b01 + (mid1 & _M32)
    hi = b11 + (mid1 >> _B32) + (mid2 >> _B32)
    lo = ((mid2 & _M32) << _B32) | (b00 & _M32)
    return hi, lo


@njit(inline="always")
def _mul_shift(m, mul_lo, mul_hi, j):
    """(m * mul) >> j for a 128-bit ``mul`` (j in 65..127: the result fits 64 bits)."""
    high1, low1 = _umul128(m, mul_hi)
    high0, _ = _umul128(m, mul_lo)
    s = high0 + low1
    if s < high0:
        high1 += _U1
    dist = np.uint64(j - 64)
    return (high1 << (np.uint64(64) - dist)) | (s >> dist)


@njit(inline="always")
def _pow5_factor(v):
    count = 0
    while v > _U0:
        q = v // _U5
        if v - q * _U5 != _U0:
            break
        v = q
        count += 1
    return count


@njit(inline="always")
def _pow5bits(e):
    """ceil(log2(5**e)) for e in 1..3528 (1 for e = 0)."""
    return ((e * 1217359) >> 19) + 1


@njit(inline="always")
def _write_float(bits, pow5, pow5_inv, out, pos, digits):
    """Write repr of the double whose IEEE-754 bits are ``bits`` into ``out`` from ``pos`` (at
    most :data:`MAX_TEXT` - 1 bytes; ``digits``: 20 bytes of scratch); return the position after it."""
    sign = (bits >> np.uint64(63)) != _U0
    ieee_m = bits & np.uint64((1 << 52) - 1)
    ieee_e = np.int64((bits >> np.uint64(52)) & np.uint64(0x7FF))
    if ieee_e == 0x7FF:
        if ieee_m != _U0:                       # nan (either sign): "nan"
            out[pos], out[pos + 1], out[pos + 2] = 110, 97, 110
            pos += 3
            return pos
        if sign:
            out[pos] = 45
            pos += 1
        out[pos], out[pos + 1], out[pos + 2] = 105, 110, 102    # "inf"
        pos += 3
        return pos
    if sign:
        out[pos] = 45                           # "-"
        pos += 1
    if ieee_e == 0 and ieee_m == _U0:
        out[pos], out[pos + 1], out[pos + 2] = 48, 46, 48       # "0.0"
        pos += 3
        return pos
    # ---- Ryu: the shortest digits ``output`` * 10**exp10 that read back as this double
    if ieee_e == 0:
        m2 = ieee_m
        e2 = 1 - 1023 - 52 - 2
    else:
        m2 = ieee_m | np.uint64(1 << 52)
        e2 = ieee_e - 1023 - 52 - 2
    accept_bounds = (m2 & _U1) == _U0
    mv = _U4 * m2
    mm_shift = _U1 if (ieee_m != _U0 or ieee_e <= 1) else _U0
    vm_trailing_zeros = False
    vr_trailing_zeros = False
    if e2 >= 0:
        q = ((e2 * 78913) >> 18) - (1 if e2 > 3 else 0)           # log10(2**e2), less one
        e10 = q
        kk = _POW5_INV_BITCOUNT + _pow5bits(q) - 1
        i = -e2 + q + kk
        vr = _mul_shift(mv, pow5_inv[q, 0], pow5_inv[q, 1], i)
        vp = _mul_shift(mv + _U2, pow5_inv[q, 0], pow5_inv[q, 1], i)
        vm = _mul_shift(mv - _U1 - mm_shift, pow5_inv[q, 0], pow5_inv[q, 1], i)
        if q <= 21:
            if mv % _U5 == _U0:
                vr_trailing_zeros = _pow5_factor(mv) >= q
            elif accept_bounds:
                vm_trailing_zeros = _pow5_factor(mv - _U1 - mm_shift) >= q
            elif _pow5_factor(mv + _U2) >= q:
                vp -= _U1
    else:
        q = ((-e2 * 732923) >> 20) - (1 if -e2 > 1 else 0)        # log10(5**-e2), less one
        e10 = q + e2
        i = -e2 - q
        kk = _pow5bits(i) - _POW5_BITCOUNT
        j = q - kk
        vr = _mul_shift(mv, pow5[i, 0], pow5[i, 1], j)
        vp = _mul_shift(mv + _U2, pow5[i, 0], pow5[i, 1], j)
        vm = _mul_shift(mv - _U1 - mm_shift, pow5[i, 0], pow5[i, 1], j)
        if q <= 1:
            vr_trailing_zeros = True
            if accept_bounds:
                vm_trailing_zeros = mm_shift == _U1
            else:
                vp -= _U1
        elif q < 63:
            vr_trailing_zeros = (mv & ((_U1 << np.uint64(q)) - _U1)) == _U0
    removed = 0
    last_removed = _U0
    if vm_trailing_zeros or vr_trailing_zeros:
        while vp // _U10 > vm // _U10:
            vm_trailing_zeros = vm_trailing_zeros and vm % _U10 == _U0
            vr_trailing_zeros = vr_trailing_zeros and last_removed == _U0
            last_removed = vr % _U10
            vr //= _U10
            vp //= _U10
            vm //= _U10
            removed += 1
        if vm_trailing_zeros:
            while vm % _U10 == _U0:
                vr_trailing_zeros = vr_trailing_zeros and last_removed == _U0
                last_removed = vr % _U10
                vr //= _U10
                vp //= _U10
                vm //= _U10
                removed += 1
        if vr_trailing_zeros and last_removed == _U5 and vr % _U2 == _U0:
            last_removed = _U4                  # exactly halfway: round to even
        up = (vr == vm and (not accept_bounds or not vm_trailing_zeros)) or last_removed >= _U5
        output = vr + (_U1 if up else _U0)
    else:
        round_up = False
        while vp // _U10 > vm // _U10:
            round_up = vr % _U10 >= _U5
            vr //= _U10
            vp //= _U10
            vm //= _U10
            removed += 1
        output = vr + (_U1 if (vr == vm or round_up) else _U0)
    exp10 = e10 + removed
    while output % _U10 == _U0:                 # (never expected; repr has no trailing zeros)
        output //= _U10
        exp10 += 1
    # ---- the digits, then Python's layout of them
    n = 0
    while output > _U0:
        digits[n] = output % _U10 + _U48
        output //= _U10
        n += 1
    # digits[n-1] is the first digit; the value is 0.d1d2...dn * 10**decpt
    decpt = exp10 + n
    if decpt <= -4 or decpt > 16:              # 1.2345e-05, 1e+16
        out[pos] = digits[n - 1]
        pos += 1
        if n > 1:
            out[pos] = 46
            pos += 1
            for d in range(n - 2, -1, -1):
                out[pos] = digits[d]
                pos += 1
        e = decpt - 1
        out[pos] = 101                          # "e"
        out[pos + 1] = 45 if e < 0 else 43
        pos += 2
        e = -e if e < 0 else e
        if e >= 100:
            out[pos] = 48 + e // 100
            pos += 1
        out[pos] = 48 + (e // 10) % 10
        out[pos + 1] = 48 + e % 10
        pos += 2
    elif decpt <= 0:                            # 0.000123
        out[pos], out[pos + 1] = 48, 46
        pos += 2
        for _ in range(-decpt):
            out[pos] = 48
            pos += 1
        for d in range(n - 1, -1, -1):
            out[pos] = digits[d]
            pos += 1
    elif decpt >= n:                            # 1200.0
        for d in range(n - 1, -1, -1):
            out[pos] = digits[d]
            pos += 1
        for _ in range(decpt - n):
            out[pos] = 48
            pos += 1
        out[pos], out[pos + 1] = 46, 48
        pos += 2
    else:                                       # 12.345
        for idx in range(n):
            if idx == decpt:
                out[pos] = 46
                pos += 1
            out[pos] = digits[n - 1 - idx]
            pos += 1
    return pos


@njit(types.int64(types.Array(types.uint64, 1, "C", readonly=True), types.Array(types.uint64, 2, "C", readonly=True),
                  types.Array(types.uint64, 2, "C", readonly=True), types.Array(types.uint8, 1, "C")),
      cache=True, nogil=True)
def _write_texts(bits_all, pow5, pow5_inv, out):
    """Write repr of each double (its IEEE-754 bits in ``bits_all``) into ``out`` (at least
    :data:`MAX_TEXT` bytes per value), separated by ``\\n`` (none after the last); return the
    bytes written."""
    digits = np.empty(20, np.uint8)
    pos = 0
    for k in range(bits_all.size):
        if k:
            out[pos] = 10                           # "\n"
            pos += 1
        pos = _write_float(bits_all[k], pow5, pow5_inv, out, pos, digits)
    return pos


#: the longest repr of a double (``-2.2250738585072014e-308``: 24 characters) and its separator
MAX_TEXT = 25


def float_texts(a) -> list[str]:
    """``list(map(repr, a.tolist()))`` of a 1-D float array ``a`` (float64 or narrower: its
    values as the doubles ``tolist`` gives)."""
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype.kind != "f" or a.dtype.itemsize > 8:
        raise TypeError(f"float_texts takes a 1-D array of float64 or narrower, not {a.dtype} of shape {a.shape}")
    if not a.size:
        return []
    with np.errstate(invalid="ignore"):         # (a narrower float's NaN, widened)
        bits = np.ascontiguousarray(a, np.float64).view(np.uint64)
    out = np.empty(a.size * MAX_TEXT, np.uint8)
    size = _write_texts(bits, _POW5, _POW5_INV, out)
    return out[:size].tobytes().decode("ascii").split("\n")


@njit(inline="always")
def _write_int(v, out, pos, digits):
    """Write str of the int64 ``v`` into ``out`` from ``pos`` (at most 20 bytes); return the
    position after it."""
    if v < 0:
        out[pos] = 45
        pos += 1
        u = np.uint64(-(v + 1)) + _U1              # (|v| without overflow at -2**63)
    else:
        u = np.uint64(v)
    n = 0
    while True:
        digits[n] = u % _U10 + _U48
        u //= _U10
        n += 1
        if u == _U0:
            break
    for d in range(n - 1, -1, -1):
        out[pos] = digits[d]
        pos += 1
    return pos


#: the kinds of column of :func:`table_text`
FLOAT, INT, TEXT, CONST = 0, 1, 2, 3

_I1 = types.Array(types.int64, 1, "C", readonly=True)
_I2 = types.Array(types.int64, 2, "C", readonly=True)


@njit(types.int64(types.int64, _I1, _I1, types.Array(types.uint64, 2, "C", readonly=True), _I2,
                  types.Array(types.uint8, 1, "C", readonly=True), _I2, _I2, _I2,
                  types.Array(types.uint64, 2, "C", readonly=True), types.Array(types.uint64, 2, "C", readonly=True),
                  types.Array(types.uint8, 1, "C")), cache=True, nogil=True)
def _write_table(n, kinds, index, floats, ints, buf, text_start, text_stop, const_at, pow5, pow5_inv, out):
    """Write ``n`` rows: column c of row r is, by ``kinds[c]``, the repr of ``floats[index[c], r]``
    (IEEE-754 bits), the str of ``ints[index[c], r]``, the bytes ``buf[text_start[index[c], r]:
    text_stop[index[c], r]]`` or ``buf[const_at[index[c], 0]:const_at[index[c], 1]]``; columns
    joined by ``,``, each row ended by ``\\n``.  Returns the bytes written."""
    digits = np.empty(20, np.uint8)
    pos = 0
    for r in range(n):
        for c in range(kinds.size):
            if c:
                out[pos] = 44                       # ","
                pos += 1
            kind, j = kinds[c], index[c]
            if kind == 0:
                pos = _write_float(floats[j, r], pow5, pow5_inv, out, pos, digits)
            elif kind == 1:
                pos = _write_int(ints[j, r], out, pos, digits)
            else:
                if kind == 2:
                    a, b = text_start[j, r], text_stop[j, r]
                else:
                    a, b = const_at[j, 0], const_at[j, 1]
                for i in range(a, b):
                    out[pos] = buf[i]
                    pos += 1
        out[pos] = 10                               # "\n"
        pos += 1
    return pos


def _text_column(value, n: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A :data:`TEXT` column as (its bytes, where each value starts in them, where it stops).  A
    numpy array of strings (``U``) whose texts are ASCII is taken as it is, fixed width, without a
    Python string per value (a tune's statuses: a quarter of its ``data.csv`` text's CPU as
    strings); else each value's text (UTF-8) one after the other."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.shape == (n,):
        value = np.ascontiguousarray(value)
        points = value.view(np.uint32)              # (each character's code point, fixed width)
        if points.size and points.max() < 128:      # ASCII: one byte each
            starts = np.arange(n, dtype=np.int64) * (value.dtype.itemsize // 4)
            return points.astype(np.uint8).tobytes(), starts, starts + np.char.str_len(value).astype(np.int64)
        value = value.tolist()
    if len(value) != n:
        raise TypeError(f"a text column of {n} values expected, not {len(value)}")
    data = "".join(value).encode("utf-8")
    sizes = np.fromiter(map(len, value), np.int64, n)
    if len(data) != int(sizes.sum()):               # (not ASCII: the sizes in bytes)
        sizes = np.fromiter((len(t.encode("utf-8")) for t in value), np.int64, n)
    stops = np.cumsum(sizes)
    return data, stops - sizes, stops


def table_text(n: int, columns: list[tuple[int, object]]) -> str:
    """The ``n`` rows of a table as text: ``columns`` in order, each (:data:`FLOAT`, a 1-D float
    array of ``n``: float64 or narrower), (:data:`INT`, a 1-D integer array of ``n`` that fits
    int64), (:data:`TEXT`, a list of ``n`` strings, or a 1-D numpy array of ``n`` strings) or
    (:data:`CONST`, one string for every row); fields joined by ``,``, rows ended by a newline."""
    kinds = np.array([k for k, _ in columns], np.int64)
    index = np.zeros(len(columns), np.int64)
    floats, ints, texts, consts = [], [], [], []
    width = len(columns)                            # the commas and the newline
    for c, (kind, value) in enumerate(columns):
        group = (floats, ints, texts, consts)[kind]
        index[c] = len(group)
        if kind == FLOAT:
            a = np.asarray(value)
            if a.shape != (n,) or a.dtype.kind != "f" or a.dtype.itemsize > 8:
                raise TypeError(f"a float column of {n} values expected, not {a.dtype} of shape {a.shape}")
            with np.errstate(invalid="ignore"):     # (a narrower float's NaN, widened)
                floats.append(np.asarray(a, np.float64))
            width += MAX_TEXT - 1
        elif kind == INT:
            a = np.asarray(value)
            if a.shape != (n,) or a.dtype.kind not in "iu" or (a.dtype.kind == "u" and a.dtype.itemsize > 4):
                raise TypeError(f"an int64 column of {n} values expected, not {a.dtype} of shape {a.shape}")
            ints.append(a)
            width += 20
        elif kind == TEXT:
            data, starts, stops = _text_column(value, n)
            texts.append((data, starts, stops))
            width += int((stops - starts).max(initial=0))
        else:
            data = str(value).encode("utf-8")
            consts.append(data)
            width += len(data)
    parts, at = [], 0
    text_start = np.zeros((len(texts), n), np.int64)
    text_stop = np.zeros((len(texts), n), np.int64)
    for j, (data, starts, stops) in enumerate(texts):
        np.add(starts, at, out=text_start[j])
        np.add(stops, at, out=text_stop[j])
        parts.append(data)
        at += len(data)
    const_at = np.zeros((len(consts), 2), np.int64)
    for j, data in enumerate(consts):
        const_at[j] = at, at + len(data)
        parts.append(data)
        at += len(data)
    buf = np.frombuffer(b"".join(parts) or b"\0", np.uint8)
    float_bits = np.ascontiguousarray(np.stack(floats) if floats else np.zeros((0, n))).view(np.uint64)
    int_values = np.ascontiguousarray(np.stack(ints).astype(np.int64, copy=False) if ints else np.zeros((0, n), np.int64))
    out = np.empty(n * width, np.uint8)
    size = _write_table(n, kinds, index, float_bits, int_values, buf, text_start, text_stop, const_at, _POW5,
                        _POW5_INV, out)
    return out[:size].tobytes().decode("utf-8")
