"""``typed_values`` (numpy for integers) decodes exactly as ``denormalize_many``."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanroom.crypto import denormalize_many, normalize_many
from cleanroom.errors import NormalizationError
from cleanroom.sql.evaluate import typed_values

RANGES = {
    "tinyint": (0, 255),
    "smallint": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}


@pytest.mark.parametrize("sql_type", sorted(RANGES))
@given(data=st.data())
def test_integers_decode_as_denormalize_many(sql_type: str, data: st.DataObject) -> None:
    low, high = RANGES[sql_type]
    values = data.draw(st.lists(st.integers(low, high), max_size=50))
    plain = normalize_many(values, sql_type)
    got = typed_values(plain, sql_type)
    assert got == denormalize_many(plain, sql_type) == values
    assert all(type(v) is int for v in got)


@pytest.mark.parametrize(("sql_type", "bad"), [("tinyint", 256), ("smallint", -(2**15) - 1)])
def test_a_stored_value_out_of_range_raises_as_denormalize_many(sql_type: str, bad: int) -> None:
    plain = [*normalize_many([1, 2], sql_type), struct.pack("<q", bad)]
    with pytest.raises(NormalizationError) as fast:
        typed_values(plain, sql_type)
    with pytest.raises(NormalizationError) as slow:
        denormalize_many(plain, sql_type)
    assert str(fast.value) == str(slow.value)


def test_a_wrong_size_and_other_types_go_to_denormalize_many() -> None:
    with pytest.raises(NormalizationError):
        typed_values([b"\x01\x02"], "int")
    plain = normalize_many(["a", "bc"], "nvarchar(10)")
    assert typed_values(plain, "nvarchar(10)") == ["a", "bc"]
    assert typed_values([], "int") == []
