"""Hypothesis round-trips for every normalizable SQL type.

``denormalize(normalize(v, t), t) == v`` up to the documented truncation (time scales,
``datetime``'s 1/300 s, ``smalldatetime``'s minute) and padding (``binary(n)``,
``char(n)``, ``nchar(n)``), plus the determinism properties deterministic encryption needs:
equal values give equal bytes, different values give different bytes.
"""

from __future__ import annotations

import datetime as dt
import decimal
import struct
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cleanroom.crypto.normalize import denormalize, denormalize_many, normalize, normalize_many
from cleanroom.crypto.sqltypes import SqlType
from cleanroom.errors import NormalizationError

INT_RANGES = {
    "tinyint": (0, 255),
    "smallint": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}

# Offsets SQL Server allows: whole minutes within ±14:00.
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))


def roundtrip(value: object, sql_type: str | SqlType) -> object:
    data = normalize(value, sql_type)
    t = SqlType.parse(sql_type) if isinstance(sql_type, str) else sql_type
    if t.normalized_size is not None:
        assert len(data) == t.normalized_size
    else:
        assert len(data) <= t.max_normalized_size
    return denormalize(data, sql_type)


# ---------------------------------------------------------------------------------------------
# exact round-trips


@settings(deadline=None)
@given(st.booleans())
def test_bit(value: bool) -> None:
    assert roundtrip(value, "bit") is value


@pytest.mark.parametrize("name", sorted(INT_RANGES))
@settings(deadline=None)
@given(data=st.data())
def test_integers(name: str, data: st.DataObject) -> None:
    low, high = INT_RANGES[name]
    value = data.draw(st.integers(low, high))
    assert roundtrip(value, name) == value


@settings(deadline=None)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_real(value: float) -> None:
    back = roundtrip(value, "real")
    assert back == value
    assert struct.pack("<f", back) == struct.pack("<f", value)  # keeps -0.0


@settings(deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float(value: float) -> None:
    back = roundtrip(value, "float")
    assert struct.pack("<d", back) == struct.pack("<d", value)


@st.composite
def decimal_columns(draw: st.DrawFn) -> tuple[SqlType, Decimal]:
    precision = draw(st.integers(1, 38))
    scale = draw(st.integers(0, precision))
    unscaled = draw(st.integers(-(10**precision) + 1, 10**precision - 1))
    name = draw(st.sampled_from(["decimal", "numeric"]))
    return SqlType(name, precision=precision, scale=scale), Decimal(f"{unscaled}E-{scale}")


@settings(deadline=None)
@given(decimal_columns())
def test_decimal(column: tuple[SqlType, Decimal]) -> None:
    sql_type, value = column
    back = roundtrip(value, sql_type)
    assert back == value
    assert isinstance(back, Decimal)
    assert back.as_tuple().exponent == -(sql_type.scale or 0)  # comes back at column scale


@settings(deadline=None)
@given(
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**8), max_value=10**8),
    st.integers(0, 6),
)
def test_decimal_rounds_half_up_to_scale(value: Decimal, scale: int) -> None:
    sql_type = SqlType("decimal", precision=38, scale=scale)
    expected = value.quantize(
        Decimal(1).scaleb(-scale), rounding=decimal.ROUND_HALF_UP, context=decimal.Context(prec=60)
    )
    assert roundtrip(value, sql_type) == expected


@pytest.mark.parametrize(("name", "bits"), [("money", 64), ("smallmoney", 32)])
@settings(deadline=None)
@given(data=st.data())
def test_money(name: str, bits: int, data: st.DataObject) -> None:
    unscaled = data.draw(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    value = Decimal(f"{unscaled}E-4")
    assert roundtrip(value, name) == value


@settings(deadline=None)
@given(st.dates())
def test_date(value: dt.date) -> None:
    assert roundtrip(value, "date") == value


def truncate_microseconds(microsecond: int, scale: int) -> int:
    unit = 10 ** max(0, 6 - scale)
    return microsecond // unit * unit


@settings(deadline=None)
@given(st.times(), st.integers(0, 7))
def test_time(value: dt.time, scale: int) -> None:
    expected = value.replace(microsecond=truncate_microseconds(value.microsecond, scale))
    assert roundtrip(value, f"time({scale})") == expected
    as_delta = dt.timedelta(
        hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond
    )
    assert normalize(as_delta, f"time({scale})") == normalize(value, f"time({scale})")


@settings(deadline=None)
@given(st.datetimes(), st.integers(0, 7))
def test_datetime2(value: dt.datetime, scale: int) -> None:
    expected = value.replace(microsecond=truncate_microseconds(value.microsecond, scale))
    assert roundtrip(value, f"datetime2({scale})") == expected


@settings(deadline=None)
@given(st.datetimes(timezones=offsets), st.integers(0, 7))
def test_datetimeoffset(value: dt.datetime, scale: int) -> None:
    try:
        normalized = normalize(value, f"datetimeoffset({scale})")
    except NormalizationError:
        # Only a UTC instant outside 0001-01-01 .. 9999-12-31 may be refused.
        with pytest.raises(OverflowError):
            value.astimezone(dt.UTC)
        return
    back = denormalize(normalized, f"datetimeoffset({scale})")
    assert isinstance(back, dt.datetime)
    expected = value.replace(microsecond=truncate_microseconds(value.microsecond, scale))
    assert back == expected
    assert back.utcoffset() == value.utcoffset()
    assert back.replace(tzinfo=None) == expected.replace(tzinfo=None)


@settings(deadline=None)
@given(st.uuids())
def test_uniqueidentifier(value: object) -> None:
    assert roundtrip(value, "uniqueidentifier") == value


@settings(deadline=None)
@given(st.binary(max_size=64), st.integers(1, 80))
def test_binary(value: bytes, length: int) -> None:
    assume(len(value) <= length)
    assert roundtrip(value, f"varbinary({length})") == value
    assert roundtrip(value, "varbinary(max)") == value
    assert roundtrip(bytearray(value), f"binary({length})") == value.ljust(length, b"\x00")


@settings(deadline=None)
@given(st.text(max_size=40), st.integers(1, 100))
def test_nvarchar_and_nchar(value: str, length: int) -> None:
    units = len(value.encode("utf-16-le")) // 2
    assume(units <= length)
    assert roundtrip(value, f"nvarchar({length})") == value
    assert roundtrip(value, "nvarchar(max)") == value
    assert roundtrip(value, f"nchar({length})") == value + " " * (length - units)


@settings(deadline=None)
@given(st.text(max_size=40), st.integers(1, 200))
def test_varchar_and_char(value: str, length: int) -> None:
    size = len(value.encode("utf-8"))
    assume(size <= length)
    assert roundtrip(value, f"varchar({length})") == value
    assert roundtrip(value, "varchar(max)") == value
    assert roundtrip(value, f"char({length})") == value + " " * (length - size)


@settings(deadline=None)
@given(st.text(min_size=1, max_size=20))
def test_too_long_strings_are_refused_not_truncated(value: str) -> None:
    units = len(value.encode("utf-16-le")) // 2
    with pytest.raises(NormalizationError):
        normalize(value + "x", f"nvarchar({units})")


# ---------------------------------------------------------------------------------------------
# the lossy legacy types: stable after one step, and exact on their own grid

legacy_datetimes = st.datetimes(
    min_value=dt.datetime(1753, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 997000)
)


@settings(deadline=None)
@given(legacy_datetimes)
def test_datetime_is_within_rounding_and_idempotent(value: dt.datetime) -> None:
    normalized = normalize(value, "datetime")
    back = denormalize(normalized, "datetime")
    assert isinstance(back, dt.datetime)
    assert abs(back - value) <= dt.timedelta(microseconds=2170)  # ≤ 1/600 s + 0.5 ms
    assert normalize(back, "datetime") == normalized


@settings(deadline=None)
@given(st.integers(-53690, 2958463), st.integers(0, 300 * 86400 - 1))
def test_datetime_bytes_roundtrip(days: int, sql_ticks: int) -> None:
    data = struct.pack("<iI", days, sql_ticks)
    assert normalize(denormalize(data, "datetime"), "datetime") == data


@settings(deadline=None)
@given(st.integers(0, 65535), st.integers(0, 1439))
def test_smalldatetime_bytes_roundtrip(days: int, minutes: int) -> None:
    data = struct.pack("<HH", days, minutes)
    value = denormalize(data, "smalldatetime")
    assert value == dt.datetime(1900, 1, 1) + dt.timedelta(days=days, minutes=minutes)
    assert normalize(value, "smalldatetime") == data


@settings(deadline=None)
@given(
    st.datetimes(
        min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2079, 6, 6, 23, 59, 59, 996000)
    )
)
def test_smalldatetime_truncates_to_the_minute(value: dt.datetime) -> None:
    back = denormalize(normalize(value, "smalldatetime"), "smalldatetime")
    assert isinstance(back, dt.datetime)
    # SqlDateTime first rounds to 1/300 s (which may reach the next minute), then SqlClient
    # truncates to the minute.
    assert -dt.timedelta(milliseconds=2) < value - back < dt.timedelta(minutes=1)
    assert back.second == back.microsecond == 0


# ---------------------------------------------------------------------------------------------
# determinism: what deterministic encryption relies on


@settings(deadline=None)
@given(st.integers(0, 255))
def test_integer_widths_normalize_alike(value: int) -> None:
    forms = {normalize(value, name) for name in INT_RANGES}
    assert len(forms) == 1
    assert forms == {struct.pack("<q", value)}


@settings(deadline=None)
@given(st.sampled_from(sorted(INT_RANGES)), st.sampled_from(sorted(INT_RANGES)), st.data())
def test_integer_normalization_is_injective_across_widths(
    first: str, second: str, data: st.DataObject
) -> None:
    a = data.draw(st.integers(*INT_RANGES[first]))
    b = data.draw(st.integers(*INT_RANGES[second]))
    assert (normalize(a, first) == normalize(b, second)) == (a == b)


WIDE = decimal.Context(prec=100)


@settings(deadline=None)
@given(decimal_columns(), st.integers(0, 5))
def test_decimal_representation_does_not_matter(
    column: tuple[SqlType, Decimal], zeros: int
) -> None:
    sql_type, value = column
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    padded = value.quantize(Decimal(1).scaleb(exponent - zeros, context=WIDE), context=WIDE)
    assert padded == value
    assert str(padded) != str(value) or zeros == 0
    assert normalize(padded, sql_type) == normalize(value, sql_type)


@st.composite
def decimal_pairs(draw: st.DrawFn) -> tuple[SqlType, Decimal, Decimal]:
    sql_type, a = draw(decimal_columns())
    assert sql_type.precision is not None
    assert sql_type.scale is not None
    limit = 10**sql_type.precision - 1
    unscaled = draw(st.integers(-limit, limit) | st.just(int(a.scaleb(sql_type.scale, WIDE))))
    return sql_type, a, Decimal(f"{unscaled}E-{sql_type.scale}")


@settings(deadline=None)
@given(decimal_pairs())
def test_decimal_normalization_is_injective(pair: tuple[SqlType, Decimal, Decimal]) -> None:
    sql_type, a, b = pair
    assert (normalize(a, sql_type) == normalize(b, sql_type)) == (a == b)


@settings(deadline=None)
@given(st.text(max_size=20), st.text(max_size=20))
def test_string_normalization_is_injective(a: str, b: str) -> None:
    for sql_type in ("nvarchar(max)", "varchar(max)"):
        assert (normalize(a, sql_type) == normalize(b, sql_type)) == (a == b)
    assert normalize(a, "nvarchar(max)") == normalize(a, "nchar(4000)")  # no write padding


@settings(deadline=None)
@given(st.datetimes(timezones=offsets), offsets)
def test_datetimeoffset_same_instant_same_datetime2_part(
    value: dt.datetime, other: dt.tzinfo
) -> None:
    try:
        moved = value.astimezone(other)
        first = normalize(value, "datetimeoffset")
        second = normalize(moved, "datetimeoffset")
    except (OverflowError, NormalizationError):
        assume(False)
        return
    assert first[:8] == second[:8]
    assert (first == second) == (value.utcoffset() == moved.utcoffset())


# ---------------------------------------------------------------------------------------------
# the column forms


@settings(deadline=None)
@given(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=50))
def test_many_equals_one_by_one_int(values: list[int]) -> None:
    normalized = normalize_many(values, "int")
    assert normalized == [normalize(v, "int") for v in values]
    assert denormalize_many(normalized, "int") == values


@settings(deadline=None)
@given(st.lists(st.text(max_size=10), max_size=30))
def test_many_equals_one_by_one_nchar(values: list[str]) -> None:
    normalized = normalize_many(values, "nchar(20)")
    assert normalized == [normalize(v, "nchar(20)") for v in values]
    assert denormalize_many(normalized, "nchar(20)") == [
        denormalize(n, "nchar(20)") for n in normalized
    ]
