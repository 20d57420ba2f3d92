"""``top_candidates`` keeps every row of the first ``top`` of a full sort (ties, NULLs)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cleanroom.sql.evaluate import ColumnData, ordering, top_candidates


def _column(values: list[int | None], floats: bool) -> ColumnData:
    null = np.array([v is None for v in values], dtype=np.bool_)
    dtype = np.float64 if floats else np.int64
    array = np.array([0 if v is None else v for v in values], dtype=dtype)
    return ColumnData(array, null, True)


@given(
    values=st.lists(st.none() | st.integers(-5, 5), max_size=60),
    top=st.integers(0, 70),
    descending=st.booleans(),
    floats=st.booleans(),
)
def test_the_candidates_sorted_give_the_first_rows(
    values: list[int | None], top: int, descending: bool, floats: bool
) -> None:
    column = _column(values, floats)
    full = np.sort(ordering([(column, descending)])[:top])
    few = top_candidates(column, top, descending=descending)
    assert np.all(np.diff(few) > 0)
    assert set(full.tolist()) <= set(few.tolist())
    sub = column.take(few)
    assert np.array_equal(np.sort(few[ordering([(sub, descending)])[:top]]), full)


def test_text_columns_keep_every_row() -> None:
    column = ColumnData(["b", None, "a"], np.array([False, True, False]), False)
    assert top_candidates(column, 1, descending=False).tolist() == [0, 1, 2]
