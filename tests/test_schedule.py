"""Cell priorities and the slot scheduler."""
from __future__ import annotations

import numpy as np
import pytest

from programming.schedule import SlotScheduler, cell_order, cell_rank


def test_orders():
    rows, cols = cell_order((2, 3), "row")
    assert list(zip(rows, cols)) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    rows, cols = cell_order((2, 3), "column")
    assert list(zip(rows, cols)) == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]
    rank = cell_rank((4, 4), "random", np.random.default_rng(1))
    assert sorted(rank.ravel()) == list(range(16))
    with pytest.raises(ValueError, match="unknown cell order"):
        cell_rank((2, 2), "spiral")


def drain(shape, todo, parallel, order="row", finish_first=False):
    """Run the scheduler to the end, finishing every busy cell after each assignment round
    (or only the first busy slot when ``finish_first``); returns the assignments in order."""
    sched = SlotScheduler(shape, todo, cell_rank(shape, order), parallel)
    busy = {}
    log = []
    idle = np.ones((todo.shape[0], sched.parallel), bool)
    while sched.has_work() or busy:
        chip, slot, r, c = sched.assign(idle)
        for b, s, rr, cc in zip(chip, slot, r, c):
            busy[(b, s)] = (rr, cc)
            idle[b, s] = False
            log.append((b, rr, cc))
        # the busy cells of a chip never share a row or a column
        for b in range(todo.shape[0]):
            cells = [v for (bb, _), v in busy.items() if bb == b]
            assert len({r for r, _ in cells}) == len(cells) and len({c for _, c in cells}) == len(cells)
        done = list(busy)[:1] if finish_first else list(busy)
        for key in done:
            rr, cc = busy.pop(key)
            sched.release(np.array([key[0]]), np.array([rr]), np.array([cc]))
            idle[key] = True
    return log


def test_every_cell_once_and_no_shared_lines():
    todo = np.ones((2, 5, 7), bool)
    todo[1, 2, 3] = False
    log = drain((5, 7), todo, parallel=5, finish_first=True)
    assert len(log) == todo.sum() == len(set(log))
    assert (1, 2, 3) not in log


def test_tall_arrays_use_columns_as_slots():
    log = drain((9, 4), np.ones((1, 9, 4), bool), parallel=8)
    assert len(set(log)) == 36


def test_parallel_one_is_strict_priority_order():
    log = drain((3, 3), np.ones((1, 3, 3), bool), parallel=1, order="column")
    assert [(r, c) for _, r, c in log] == list(zip(*cell_order((3, 3), "column")))


def test_parallel_is_capped_and_validated():
    assert SlotScheduler((4, 6), np.ones((1, 4, 6), bool), cell_rank((4, 6)), 99).parallel == 4
    with pytest.raises(ValueError, match="parallel"):
        SlotScheduler((4, 6), np.ones((1, 4, 6), bool), cell_rank((4, 6)), 0)


def test_reach_order_puts_the_cells_that_need_most_drive_first():
    """``reach``: the largest need first, row-major among equals; without a need, row-major."""
    need = np.array([[1.0, 2.0, 3.0], [1.0, 3.0, 1.5]])
    rows, cols = np.unravel_index(np.argsort(cell_rank(need.shape, "reach", need=need), axis=None), need.shape)
    assert list(zip(rows, cols)) == [(0, 2), (1, 1), (0, 1), (1, 2), (0, 0), (1, 0)]
    assert (cell_rank((2, 3), "reach") == cell_rank((2, 3), "row")).all()
