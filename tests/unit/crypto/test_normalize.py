"""Known-answer byte layouts and every error path of Always Encrypted value normalization.

Expected bytes are built independently here with ``struct`` / ``int.to_bytes`` from the
layouts in ``shared/reference/always-encrypted.md`` §1.4, and cross-checked against the
plaintexts of the public cell vectors where those are typed values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import re
import struct
import uuid
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from cleanroom.crypto.normalize import (
    NORMALIZATION_RULE_VERSION,
    denormalize,
    denormalize_many,
    normalize,
    normalize_many,
)
from cleanroom.crypto.sqltypes import MAX, MAX_LOB_BYTES, SqlType
from cleanroom.errors import NormalizationError

# The package re-exports the function ``normalize``, which shadows the submodule attribute.
normalize_module = importlib.import_module("cleanroom.crypto.normalize")


def q(value: int) -> bytes:
    return struct.pack("<q", value)


def tz(minutes: int) -> dt.timezone:
    return dt.timezone(dt.timedelta(minutes=minutes))


def ticks(hour: int, minute: int, second: int, microsecond: int = 0) -> int:
    return ((hour * 3600 + minute * 60 + second) * 1_000_000 + microsecond) * 10


def test_rule_version_is_one() -> None:
    assert NORMALIZATION_RULE_VERSION == 1


# ---------------------------------------------------------------------------------------------
# SqlType


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("int", "int"),
        ("INT", "int"),
        ("  Int  ", "int"),
        ("[bigint]", "bigint"),
        ("integer", "int"),
        ("bit", "bit"),
        ("tinyint", "tinyint"),
        ("smallint", "smallint"),
        ("real", "real"),
        ("float", "float"),
        ("float(24)", "real"),
        ("float(1)", "real"),
        ("float(25)", "float"),
        ("float(53)", "float"),
        ("double precision", "float"),
        ("decimal", "decimal(18,0)"),
        ("decimal(10)", "decimal(10,0)"),
        ("decimal(10,2)", "decimal(10,2)"),
        ("  DECIMAL ( 10 , 2 ) ", "decimal(10,2)"),
        ("dec(5,5)", "decimal(5,5)"),
        ("numeric(38,38)", "numeric(38,38)"),
        ("money", "money"),
        ("smallmoney", "smallmoney"),
        ("date", "date"),
        ("time", "time(7)"),
        ("time(0)", "time(0)"),
        ("datetime2", "datetime2(7)"),
        ("datetime2(3)", "datetime2(3)"),
        ("DateTimeOffset", "datetimeoffset(7)"),
        ("datetimeoffset(2)", "datetimeoffset(2)"),
        ("datetime", "datetime"),
        ("smalldatetime", "smalldatetime"),
        ("uniqueidentifier", "uniqueidentifier"),
        ("binary", "binary(1)"),
        ("binary(16)", "binary(16)"),
        ("varbinary(8000)", "varbinary(8000)"),
        ("varbinary(MAX)", "varbinary(max)"),
        ("char(10)", "char(10)"),
        ("character(3)", "char(3)"),
        ("varchar", "varchar(1)"),
        ("character varying(20)", "varchar(20)"),
        ("varchar( max )", "varchar(max)"),
        ("nchar(4000)", "nchar(4000)"),
        ("national character(2)", "nchar(2)"),
        ("NVARCHAR(max)", "nvarchar(max)"),
        ("national  char  varying (7)", "nvarchar(7)"),
        ("binary varying(3)", "varbinary(3)"),
    ],
)
def test_parse_canonical(text: str, canonical: str) -> None:
    parsed = SqlType.parse(text)
    assert str(parsed) == canonical
    assert SqlType.parse(canonical) == parsed


def test_fields_and_defaults() -> None:
    assert SqlType.parse("decimal") == SqlType("decimal", precision=18, scale=0)
    assert SqlType("decimal") == SqlType("decimal", precision=18, scale=0)
    assert SqlType.parse("numeric(9)").scale == 0
    assert SqlType.parse("datetime2").scale == 7
    assert SqlType("time").scale == 7
    nvarchar_max = SqlType.parse("nvarchar(max)")
    assert nvarchar_max.length == MAX
    assert nvarchar_max.is_max
    assert SqlType("nvarchar", length=MAX) == nvarchar_max
    assert SqlType.parse("char").length == 1
    assert not SqlType.parse("char(3)").is_max
    int_type = SqlType.parse("int")
    assert (int_type.length, int_type.precision, int_type.scale) == (None, None, None)


def test_sqltype_is_frozen_and_hashable() -> None:
    t = SqlType.parse("decimal(10,2)")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.scale = 3  # type: ignore[misc]
    assert {t: 1}[SqlType("decimal", precision=10, scale=2)] == 1
    assert SqlType.parse("numeric(10,2)") != t  # distinct names, same normalization


@pytest.mark.parametrize(
    ("text", "python_type", "size", "max_size"),
    [
        ("bit", bool, 8, 8),
        ("tinyint", int, 8, 8),
        ("bigint", int, 8, 8),
        ("real", float, 4, 4),
        ("float", float, 8, 8),
        ("decimal(5,2)", Decimal, 17, 17),
        ("money", Decimal, 8, 8),
        ("smallmoney", Decimal, 8, 8),
        ("date", dt.date, 3, 3),
        ("time(3)", dt.time, 5, 5),
        ("datetime2(0)", dt.datetime, 8, 8),
        ("datetimeoffset", dt.datetime, 10, 10),
        ("datetime", dt.datetime, 8, 8),
        ("smalldatetime", dt.datetime, 4, 4),
        ("uniqueidentifier", uuid.UUID, 16, 16),
        ("binary(7)", bytes, None, 7),
        ("varbinary(max)", bytes, None, MAX_LOB_BYTES),
        ("char(9)", str, None, 9),
        ("nchar(9)", str, None, 18),
        ("nvarchar(max)", str, None, MAX_LOB_BYTES),
    ],
)
def test_type_hints(text: str, python_type: type, size: int | None, max_size: int) -> None:
    t = SqlType.parse(text)
    assert t.python_type is python_type
    assert t.normalized_size == size
    assert t.max_normalized_size == max_size


@pytest.mark.parametrize(
    "name",
    [
        "xml",
        "text",
        "ntext",
        "image",
        "sql_variant",
        "timestamp",
        "rowversion",
        "json",
        "vector(3)",
        "geography",
        "hierarchyid",
    ],
)
def test_unsupported_types_are_named(name: str) -> None:
    with pytest.raises(NormalizationError, match="cannot be encrypted") as info:
        SqlType.parse(name)
    assert name.split("(")[0] in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("foo", "unknown SQL type 'foo'"),
        ("nvarchar2(3)", "unknown SQL type 'nvarchar2'"),
        ("", "malformed"),
        ("int(", "malformed"),
        ("decimal(10,x)", "malformed"),
        ("varchar(-1)", "malformed"),
        ("varchar(1.5)", "malformed"),
        ("int(4)", "int takes no arguments"),
        ("date(3)", "date takes no arguments"),
        ("money(max)", "money takes no arguments"),
        ("decimal(0)", "precision must be 1 to 38"),
        ("decimal(39,0)", "precision must be 1 to 38"),
        ("decimal(5,6)", "scale must be 0 to the precision"),
        ("decimal(1,2,3)", "wrong number of arguments"),
        ("decimal(max)", "cannot be \\(max\\)"),
        ("time(8)", "scale must be 0 to 7"),
        ("datetime2(1,2)", "wrong number of arguments"),
        ("varchar(0)", "length must be 1 to 8000"),
        ("varbinary(8001)", "length must be 1 to 8000"),
        ("nvarchar(4001)", "length must be 1 to 4000"),
        ("char(max)", "char cannot be \\(max\\)"),
        ("nchar(max)", "nchar cannot be \\(max\\)"),
        ("binary(max)", "binary cannot be \\(max\\)"),
        ("float(0)", "n must be 1 to 53"),
        ("float(54)", "n must be 1 to 53"),
        ("x" * 500, "unknown SQL type"),
    ],
)
def test_parse_errors(text: str, match: str) -> None:
    with pytest.raises(NormalizationError, match=match) as info:
        SqlType.parse(text)
    assert len(str(info.value)) < 200  # a long type string is cut short


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "int", "length": 4},
        {"name": "decimal", "length": 4},
        {"name": "decimal", "precision": True},
        {"name": "time", "precision": 3},
        {"name": "varchar", "scale": 1},
        {"name": "varchar", "length": "4"},
        {"name": "INT"},
    ],
)
def test_direct_construction_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(NormalizationError):
        SqlType(**kwargs)  # type: ignore[arg-type]


def test_parse_needs_a_string() -> None:
    with pytest.raises(TypeError):
        SqlType.parse(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        normalize(5, 5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# known answers


@pytest.mark.parametrize(
    ("sql_type", "value", "expected"),
    [
        ("bit", True, q(1)),
        ("bit", False, q(0)),
        ("bit", 1, q(1)),
        ("bit", 0, q(0)),
        ("tinyint", 0, q(0)),
        ("tinyint", 255, q(255)),
        ("smallint", -32768, q(-32768)),
        ("smallint", 32767, q(32767)),
        ("int", -(2**31), q(-(2**31))),
        ("int", 2**31 - 1, bytes.fromhex("ffffff7f00000000")),
        ("int", -1, b"\xff" * 8),
        ("bigint", -(2**63), bytes.fromhex("0000000000000080")),
        ("bigint", 2**63 - 1, q(2**63 - 1)),
        ("bigint", np.int16(-7), q(-7)),
        ("real", 1.5, struct.pack("<f", 1.5)),
        ("real", 0.1, struct.pack("<f", 0.1)),
        ("real", -2, struct.pack("<f", -2.0)),
        ("real", np.float32(3.25), bytes.fromhex("00005040")),
        ("float", 1.0, bytes.fromhex("000000000000f03f")),
        ("float", -0.0, struct.pack("<d", -0.0)),
        ("float", 10**20, struct.pack("<d", 1e20)),
        ("float", Decimal("2.5"), struct.pack("<d", 2.5)),
        ("float", Fraction(1, 4), struct.pack("<d", 0.25)),
        ("uniqueidentifier", uuid.UUID("01020304-0506-0708-090a-0b0c0d0e0f10"),
         bytes.fromhex("0403020106050807090a0b0c0d0e0f10")),
        ("binary(4)", b"ab", b"ab"),
        ("varbinary(3)", bytearray(b"\x00\x01\x02"), b"\x00\x01\x02"),
        ("varbinary(max)", memoryview(b"xyz"), b"xyz"),
        ("varbinary(5)", b"", b""),
        ("nvarchar(50)", "val_determ_1",
         bytes.fromhex("760061006C005F00640065007400650072006D005F003100")),
        ("nchar(10)", "12345     ", bytes.fromhex("3100320033003400350020002000200020002000")),
        ("nchar(10)", "12345", "12345".encode("utf-16-le")),
        ("nvarchar(2)", "\U0001f600", bytes.fromhex("3dd800de")),
        ("varchar(10)", "pinned", bytes.fromhex("70696e6e6564")),
        ("varchar(2)", "é", b"\xc3\xa9"),
        ("char(3)", "ab", b"ab"),
        ("varchar(max)", "", b""),
    ],
)  # fmt: skip
def test_known_bytes(sql_type: str, value: object, expected: bytes) -> None:
    assert normalize(value, sql_type) == expected
    assert normalize(value, SqlType.parse(sql_type)) == expected


def test_integer_widths_share_one_layout() -> None:
    # The point of BIGINT normalization: equal values compare equal across int columns.
    forms = {normalize(5, t) for t in ("tinyint", "smallint", "int", "bigint")}
    assert forms == {q(5)}
    assert normalize(True, "bit") == normalize(1, "tinyint")


def decimal_bytes(unscaled: int) -> bytes:
    sign = b"\x00" if unscaled < 0 else b"\x01"
    magnitude = abs(unscaled)
    words = [(magnitude >> (32 * i)) & 0xFFFFFFFF for i in range(4)]  # low word first
    return sign + struct.pack("<4I", *words)


@pytest.mark.parametrize(
    ("sql_type", "value", "unscaled"),
    [
        ("decimal(10,2)", Decimal("12.34"), 1234),
        ("decimal(10,2)", Decimal("12.3"), 1230),
        ("decimal(10,2)", Decimal("12.345"), 1235),  # half up
        ("decimal(10,2)", Decimal("12.344999"), 1234),
        ("decimal(10,2)", Decimal("-1.005"), -101),  # half away from zero
        ("decimal(10,2)", Decimal("-0.004"), 0),  # rounds to zero: positive sign
        ("decimal(10,2)", Decimal("-0"), 0),
        ("decimal(10,2)", Decimal("1E-2000000"), 0),
        ("decimal(10,2)", 7, 700),
        ("decimal(10,2)", 0.1, 10),  # float taken by its repr
        ("decimal(10,2)", 2.675, 268),  # repr "2.675", not binary 2.67499999…
        ("decimal(10,2)", np.float64(1.25), 125),
        ("decimal(10,2)", np.float32(0.5), 50),
        ("decimal(10,2)", Fraction(1, 4), 25),
        ("numeric(5,0)", Decimal("99999.4"), 99999),
        ("decimal(5,5)", Decimal("0.123456"), 12346),
        ("decimal(18,0)", Decimal("1E+17"), 10**17),
        ("decimal(38,0)", Decimal(10**38 - 1), 10**38 - 1),
        ("decimal(38,0)", -(10**38) + 1, -(10**38) + 1),
        ("decimal(38,10)", Decimal("1234567890123456789012345678.0123456789"),
         12345678901234567890123456780123456789),
        ("decimal(38,0)", 2**96 + 2**64 + 2**32 + 1, 2**96 + 2**64 + 2**32 + 1),  # 4 words
    ],
)  # fmt: skip
def test_decimal_layout(sql_type: str, value: object, unscaled: int) -> None:
    data = normalize(value, sql_type)
    assert len(data) == 17
    assert data == decimal_bytes(unscaled)


def test_decimal_word_order_by_hand() -> None:
    data = normalize(2**32 + 2, "decimal(12,0)")
    assert data == bytes.fromhex("01" + "02000000" + "01000000" + "00000000" * 2)


def money_bytes(unscaled: int) -> bytes:
    return struct.pack("<iI", unscaled >> 32, unscaled & 0xFFFFFFFF)


@pytest.mark.parametrize(
    ("sql_type", "value", "unscaled"),
    [
        ("money", Decimal("1.2345"), 12345),
        ("money", Decimal("-1.23456"), -12346),
        ("money", Decimal("0.00005"), 1),
        ("money", 3, 30000),
        ("money", 0.1, 1000),
        ("money", Decimal("429496.7298"), 2**32 + 2),
        ("money", Decimal("922337203685477.5807"), 2**63 - 1),
        ("money", Decimal("-922337203685477.5808"), -(2**63)),
        ("smallmoney", Decimal("214748.3647"), 2**31 - 1),
        ("smallmoney", Decimal("-214748.3648"), -(2**31)),
    ],
)
def test_money_layout(sql_type: str, value: object, unscaled: int) -> None:
    assert normalize(value, sql_type) == money_bytes(unscaled)


def test_money_high_word_first_by_hand() -> None:
    assert normalize(Decimal("429496.7298"), "money") == bytes.fromhex("0100000002000000")
    assert normalize(Decimal("-0.0001"), "money") == bytes.fromhex("ffffffffffffffff")


def test_date_layout() -> None:
    assert normalize(dt.date(1, 1, 1), "date") == b"\x00\x00\x00"
    day = dt.date(2024, 2, 29)
    assert normalize(day, "date") == (day - dt.date(1, 1, 1)).days.to_bytes(3, "little")
    assert normalize(dt.date(9999, 12, 31), "date") == (3652058).to_bytes(3, "little")


@pytest.mark.parametrize(
    ("scale", "expected_ticks"),
    [
        (7, ticks(13, 45, 6, 123456)),
        (6, ticks(13, 45, 6, 123456)),
        (5, ticks(13, 45, 6, 123450)),
        (3, ticks(13, 45, 6, 123000)),
        (1, ticks(13, 45, 6, 100000)),
        (0, ticks(13, 45, 6)),
    ],
)
def test_time_layout_truncates_to_scale(scale: int, expected_ticks: int) -> None:
    value = dt.time(13, 45, 6, 123456)
    assert normalize(value, f"time({scale})") == expected_ticks.to_bytes(5, "little")
    assert normalize(dt.timedelta(hours=13, minutes=45, seconds=6, microseconds=123456),
                     f"time({scale})") == expected_ticks.to_bytes(5, "little")  # fmt: skip


def test_time_extremes() -> None:
    assert normalize(dt.time(0), "time") == bytes(5)
    last = dt.time(23, 59, 59, 999999)
    assert normalize(last, "time") == (864_000_000_000 - 10).to_bytes(5, "little")


def test_datetime2_layout() -> None:
    value = dt.datetime(2024, 2, 29, 13, 45, 6, 123456)
    days = (value.date() - dt.date(1, 1, 1)).days
    expected = ticks(13, 45, 6, 123456).to_bytes(5, "little") + days.to_bytes(3, "little")
    assert normalize(value, "datetime2") == expected
    assert normalize(value, "datetime2(2)") == (
        ticks(13, 45, 6, 120000).to_bytes(5, "little") + days.to_bytes(3, "little")
    )


def test_datetime2_takes_pandas_nanoseconds() -> None:
    import pandas as pd

    stamp = pd.Timestamp("2024-02-29 13:45:06.123456789")
    days = (dt.date(2024, 2, 29) - dt.date(1, 1, 1)).days
    expected = (ticks(13, 45, 6, 123456) + 7).to_bytes(5, "little") + days.to_bytes(3, "little")
    assert normalize(stamp, "datetime2(7)") == expected


def test_datetimeoffset_layout_is_the_utc_instant() -> None:
    value = dt.datetime(2024, 2, 29, 13, 45, 6, 123456, tzinfo=tz(-330))
    utc_days = (dt.date(2024, 2, 29) - dt.date(1, 1, 1)).days
    expected = (
        ticks(19, 15, 6, 123456).to_bytes(5, "little")
        + utc_days.to_bytes(3, "little")
        + struct.pack("<h", -330)
    )
    assert normalize(value, "datetimeoffset") == expected
    # The same instant in another zone differs only in the offset.
    same_instant = value.astimezone(tz(60))
    assert normalize(same_instant, "datetimeoffset")[:8] == expected[:8]
    assert normalize(same_instant, "datetimeoffset")[8:] == struct.pack("<h", 60)


def test_datetimeoffset_crossing_midnight() -> None:
    value = dt.datetime(2024, 1, 1, 1, 0, tzinfo=tz(14 * 60))
    days = (dt.date(2023, 12, 31) - dt.date(1, 1, 1)).days
    expected = (
        ticks(11, 0, 0).to_bytes(5, "little") + days.to_bytes(3, "little") + struct.pack("<h", 840)
    )
    assert normalize(value, "datetimeoffset(0)") == expected


@pytest.mark.parametrize(
    ("value", "days", "sql_ticks"),
    [
        (dt.datetime(1900, 1, 1), 0, 0),
        (dt.datetime(1753, 1, 1), -53690, 0),
        (dt.datetime(2024, 1, 1, 12, 0, 0, 5000), 45290, 12 * 3600 * 300 + 2),  # .005 -> 2 ticks
        (dt.datetime(2024, 1, 1, 12, 0, 0, 3000), 45290, 12 * 3600 * 300 + 1),
        (dt.datetime(2024, 1, 1, 0, 0, 1), 45290, 300),
        (dt.datetime(1999, 12, 31, 23, 59, 59, 999000), 36524, 0),  # rounds to next day
        (dt.datetime(9999, 12, 31, 23, 59, 59, 997000), 2958463, 25919999),
    ],
)
def test_datetime_layout(value: dt.datetime, days: int, sql_ticks: int) -> None:
    assert normalize(value, "datetime") == struct.pack("<iI", days, sql_ticks)


@pytest.mark.parametrize(
    ("value", "days", "minutes"),
    [
        (dt.datetime(1900, 1, 1), 0, 0),
        (dt.datetime(2024, 1, 1, 12, 34, 59), 45290, 12 * 60 + 34),  # SqlClient truncates
        (dt.datetime(2079, 6, 6, 23, 59), 65535, 1439),
    ],
)
def test_smalldatetime_layout(value: dt.datetime, days: int, minutes: int) -> None:
    assert normalize(value, "smalldatetime") == struct.pack("<HH", days, minutes)


# ---------------------------------------------------------------------------------------------
# reading back


@pytest.mark.parametrize(
    ("sql_type", "data", "expected"),
    [
        ("bit", q(1), True),
        ("bit", q(0), False),
        ("tinyint", q(200), 200),
        ("bigint", q(-(2**63)), -(2**63)),
        ("real", struct.pack("<f", 0.1), float(np.float32(0.1))),
        ("float", struct.pack("<d", -1.5), -1.5),
        ("decimal(10,2)", decimal_bytes(-101), Decimal("-1.01")),
        ("decimal(10,2)", b"\x00" + bytes(16), Decimal("0.00")),  # negative zero reads as zero
        ("decimal(38,0)", decimal_bytes(10**38 - 1), Decimal(10**38 - 1)),
        ("money", money_bytes(-12346), Decimal("-1.2346")),
        ("smallmoney", money_bytes(2**31 - 1), Decimal("214748.3647")),
        ("date", (738944).to_bytes(3, "little"), dt.date(2024, 2, 29)),
        ("time(7)", (ticks(1, 2, 3, 456789) + 9).to_bytes(5, "little"), dt.time(1, 2, 3, 456789)),
        ("datetime", struct.pack("<iI", 45290, 12 * 3600 * 300 + 2),
         dt.datetime(2024, 1, 1, 12, 0, 0, 7000)),
        ("datetime", struct.pack("<iI", -53690, 0), dt.datetime(1753, 1, 1)),
        ("smalldatetime", struct.pack("<HH", 65535, 1439), dt.datetime(2079, 6, 6, 23, 59)),
        ("uniqueidentifier", bytes.fromhex("0403020106050807090a0b0c0d0e0f10"),
         uuid.UUID("01020304-0506-0708-090a-0b0c0d0e0f10")),
        ("binary(4)", b"ab", b"ab\x00\x00"),
        ("varbinary(4)", b"ab", b"ab"),
        ("nchar(10)", "12345".encode("utf-16-le"), "12345     "),
        ("nchar(3)", "\U0001f600".encode("utf-16-le"), "\U0001f600 "),  # pads code units
        ("nvarchar(10)", "12345".encode("utf-16-le"), "12345"),
        ("char(4)", "é".encode(), "é  "),  # pads bytes
        ("varchar(4)", b"ab", "ab"),
    ],
)  # fmt: skip
def test_known_reads(sql_type: str, data: bytes, expected: object) -> None:
    value = denormalize(data, sql_type)
    assert value == expected
    assert type(value) is type(expected)


def test_read_the_go_mssqldb_nchar_vector() -> None:
    plaintext = bytes.fromhex("3100320033003400350020002000200020002000")
    assert denormalize(plaintext, "nchar(10)") == "12345     "
    assert denormalize(bytearray(plaintext), "nvarchar(10)") == "12345     "


def test_read_datetimeoffset() -> None:
    value = dt.datetime(2024, 2, 29, 13, 45, 6, 123456, tzinfo=tz(-330))
    back = denormalize(normalize(value, "datetimeoffset"), "datetimeoffset")
    assert isinstance(back, dt.datetime)
    assert back == value
    assert back.utcoffset() == dt.timedelta(minutes=-330)
    assert back.replace(tzinfo=None) == value.replace(tzinfo=None)  # local wall time kept
    utc = denormalize(normalize(value.astimezone(dt.UTC), "datetimeoffset"), "datetimeoffset")
    assert isinstance(utc, dt.datetime)
    assert utc.tzinfo is dt.UTC


# ---------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    ("sql_type", "value", "match"),
    [
        ("bit", 2, "must be 0 or 1"),
        ("bit", "1", "expected bool, got str"),
        ("bit", 1.0, "expected bool, got float"),
        ("int", True, "expected int, got bool"),
        ("int", 1.0, "expected int, got float"),
        ("int", "5", "expected int, got str"),
        ("int", Decimal(5), "expected int, got Decimal"),
        ("tinyint", -1, r"out of range \[0, 255\]"),
        ("tinyint", 256, "out of range"),
        ("smallint", 32768, "out of range"),
        ("int", 2**31, "out of range"),
        ("bigint", 2**63, "out of range"),
        ("bigint", -(2**63) - 1, "out of range"),
        ("real", float("nan"), "NaN and infinities"),
        ("real", float("inf"), "NaN and infinities"),
        ("real", 1e39, "out of range"),
        ("real", -1e39, "out of range"),
        ("real", True, "expected float, got bool"),
        ("real", "1.5", "expected float, got str"),
        ("float", float("-inf"), "NaN and infinities"),
        ("float", 10**400, "out of range"),
        ("float", Decimal("sNaN"), "NaN and infinities"),
        ("float", Decimal("1E+400"), "out of range"),
        ("float", None, "NULL is stored as SQL NULL"),
        ("decimal(10,2)", Decimal("NaN"), "NaN and infinities"),
        ("decimal(10,2)", float("inf"), "NaN and infinities"),
        ("decimal(10,2)", "1.5", "expected Decimal, got str"),
        ("decimal(10,2)", True, "expected Decimal, got bool"),
        ("decimal(10,2)", Decimal("100000000"), "too many digits"),
        ("decimal(10,2)", Decimal("99999999.995"), "too many digits"),  # rounding carries
        ("decimal(10,2)", Decimal("1E+999999999"), "too many digits"),
        ("decimal(3,3)", Decimal(1), "too many digits"),
        ("decimal(38,0)", 10**38, "too many digits"),
        ("money", Decimal("922337203685477.5808"), "out of range"),
        ("money", Decimal("-922337203685477.58085"), "out of range"),
        ("money", Decimal("1E+20"), "too many digits"),
        ("money", "3", "expected Decimal, got str"),
        ("smallmoney", Decimal("214748.36475"), "out of range"),
        ("smallmoney", Decimal("-214748.3649"), "out of range"),
        ("date", dt.datetime(2024, 1, 1), "expected date, got datetime"),
        ("date", "2024-01-01", "expected date, got str"),
        ("time", dt.time(1, tzinfo=dt.UTC), "naive time"),
        ("time", dt.timedelta(days=1), r"within \[0, 24 h\)"),
        ("time", dt.timedelta(microseconds=-1), r"within \[0, 24 h\)"),
        ("time", dt.datetime(2024, 1, 1), "expected time, got datetime"),
        ("datetime2", dt.date(2024, 1, 1), "expected datetime, got date"),
        ("datetime2", dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "naive datetime"),
        ("datetimeoffset", dt.datetime(2024, 1, 1), "aware datetime"),
        ("datetimeoffset", dt.date(2024, 1, 1), "expected aware datetime, got date"),
        ("datetimeoffset", dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(seconds=30))),
         "whole minutes"),
        ("datetimeoffset", dt.datetime(2024, 1, 1, tzinfo=tz(14 * 60 + 1)), "within ±14:00"),
        ("datetimeoffset", dt.datetime(1, 1, 1, tzinfo=tz(60)), "UTC instant is out of range"),
        ("datetimeoffset", dt.datetime(9999, 12, 31, 23, tzinfo=tz(-120)),
         "UTC instant is out of range"),
        ("datetime", dt.datetime(1752, 12, 31, 23, 59, 59), "out of range"),
        ("datetime", dt.datetime(9999, 12, 31, 23, 59, 59, 999000), "out of range"),
        ("datetime", dt.datetime(2000, 1, 1, tzinfo=dt.UTC), "naive datetime"),
        ("datetime", dt.date(2000, 1, 1), "expected datetime, got date"),
        ("smalldatetime", dt.datetime(1899, 12, 31, 23, 59), "out of range"),
        ("smalldatetime", dt.datetime(2079, 6, 7), "out of range"),
        ("uniqueidentifier", "01020304-0506-0708-090a-0b0c0d0e0f10", "expected uuid.UUID, got str"),
        ("uniqueidentifier", bytes(16), "expected uuid.UUID, got bytes"),
        ("binary(2)", b"abc", "longer than 2 bytes"),
        ("varbinary(2)", "ab", "expected bytes, got str"),
        ("nvarchar(2)", "abc", "longer than 2 UTF-16 code units"),
        ("nvarchar(1)", "\U0001f600", "longer than 1 UTF-16 code units"),
        ("nchar(4)", b"ab", "expected str, got bytes"),
        ("nvarchar(10)", "a\ud800b", "unpaired surrogate"),
        ("varchar(10)", "a\udfffb", "unpaired surrogate"),
        ("varchar(1)", "é", "longer than 1 bytes"),
        ("char(2)", 12, "expected str, got int"),
    ],
)  # fmt: skip
def test_normalize_errors(sql_type: str, value: object, match: str) -> None:
    with pytest.raises(NormalizationError, match=match) as info:
        normalize(value, sql_type)
    message = str(info.value)
    assert message.startswith(str(SqlType.parse(sql_type)) + ": ")
    assert isinstance(info.value, ValueError)
    # Nothing that could carry the value rides along.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


@pytest.mark.parametrize(
    ("sql_type", "data", "match"),
    [
        ("bit", q(2), "neither 0 nor 1"),
        ("bit", b"\x01", "must be 8 bytes, got 1"),
        ("tinyint", q(256), "stored value out of range"),
        ("smallint", q(-40000), "stored value out of range"),
        ("int", b"\x00" * 4, "must be 8 bytes, got 4"),
        ("bigint", b"\x00" * 9, "must be 8 bytes, got 9"),
        ("real", struct.pack("<f", float("nan")), "NaN or infinite"),
        ("real", struct.pack("<d", 1.0), "must be 4 bytes, got 8"),
        ("float", struct.pack("<d", float("inf")), "NaN or infinite"),
        ("float", b"", "must be 8 bytes, got 0"),
        ("decimal(10,2)", b"\x02" + bytes(16), "sign byte"),
        ("decimal(10,2)", decimal_bytes(10**10), "too many digits"),
        ("decimal(38,0)", b"\x01" + b"\xff" * 16, "too many digits"),
        ("decimal(10,2)", decimal_bytes(1)[:13], "must be 17 bytes, got 13"),
        ("money", b"\x00" * 4, "must be 8 bytes, got 4"),
        ("smallmoney", money_bytes(2**31), "stored value out of range"),
        ("date", (3652059).to_bytes(3, "little"), "stored date out of range"),
        ("date", b"\x00" * 4, "must be 3 bytes, got 4"),
        ("time", (864_000_000_000).to_bytes(5, "little"), "time of day out of range"),
        ("time(3)", bytes(8), "must be 5 bytes, got 8"),
        ("datetime2", bytes(5), "must be 8 bytes, got 5"),
        ("datetime2", b"\xff" * 5 + bytes(3), "time of day out of range"),
        ("datetimeoffset", bytes(8), "must be 10 bytes, got 8"),
        ("datetimeoffset", bytes(8) + struct.pack("<h", 841), "UTC offset out of range"),
        ("datetimeoffset", bytes(8) + struct.pack("<h", -1), "stored local time out of range"),
        ("datetime", struct.pack("<iI", -53691, 0), "stored value out of range"),
        ("datetime", struct.pack("<iI", 0, 25920000), "stored value out of range"),
        ("datetime", bytes(4), "must be 8 bytes, got 4"),
        ("smalldatetime", struct.pack("<HH", 0, 1440), "stored value out of range"),
        ("smalldatetime", bytes(8), "must be 4 bytes, got 8"),
        ("uniqueidentifier", bytes(15), "must be 16 bytes, got 15"),
        ("binary(2)", b"abc", "stored value longer than 2 bytes"),
        ("varbinary(2)", b"abc", "stored value longer than 2 bytes"),
        ("nvarchar(5)", b"abc", "odd number of bytes"),
        ("nvarchar(1)", "ab".encode("utf-16-le"), "longer than 1 UTF-16 code units"),
        ("nvarchar(5)", b"\x00\xd8", "not valid UTF-16-LE"),
        ("varchar(5)", b"\xff", "not valid UTF-8"),
        ("char(1)", b"ab", "stored value longer than 1 bytes"),
        ("int", "12345678", "expected bytes, got str"),
    ],
)  # fmt: skip
def test_denormalize_errors(sql_type: str, data: bytes, match: str) -> None:
    with pytest.raises(NormalizationError, match=match) as info:
        denormalize(data, sql_type)
    assert str(info.value).startswith(str(SqlType.parse(sql_type)) + ": ")
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


@pytest.mark.parametrize(
    ("sql_type", "value"),
    [
        ("smallint", 987654321),
        ("tinyint", -424242),
        ("decimal(5,2)", Decimal("31415926.5358979")),
        ("decimal(5,2)", 31415926.53),
        ("money", Decimal("271828182845904523536.0287")),
        ("nvarchar(5)", "SECRET-PATIENT-NAME"),
        ("nvarchar(50)", "SECRET-PATIENT\ud800NAME"),
        ("varchar(5)", "SECRET-PATIENT-NAME"),
        ("varbinary(5)", b"SECRET-PATIENT-NAME"),
        ("real", 3.4e39),
        ("float", 10**400 + 12345),
        ("date", dt.datetime(1987, 6, 5, 4, 3, 2)),
        ("datetimeoffset", dt.datetime(1987, 6, 5, 4, 3, 2)),
        ("datetimeoffset", dt.datetime(1, 1, 1, 0, 30, tzinfo=tz(123))),
        ("datetime", dt.datetime(1687, 6, 5, 4, 3, 2)),
    ],
)
def test_messages_never_carry_the_value(sql_type: str, value: object) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize(value, sql_type)
    message = str(info.value)
    for shown in {str(value), repr(value), str(value)[:6]}:
        assert shown not in message
    if isinstance(value, str):
        assert "SECRET" not in message
        assert "PATIENT" not in message
    if isinstance(value, dt.datetime):
        assert "1987" not in message
        assert "1687" not in message
    with pytest.raises(NormalizationError) as many:
        normalize_many([value], sql_type)
    assert "SECRET" not in str(many.value)
    assert str(many.value).startswith("row 0: ")


# ---------------------------------------------------------------------------------------------
# the column forms


def test_normalize_many_matches_normalize() -> None:
    values = [0, 1, -1, 2**31 - 1, -(2**31)]
    assert normalize_many(values, "int") == [normalize(v, "int") for v in values]
    assert normalize_many([], "int") == []
    texts = ["a", "", "é\U0001f600"]
    assert normalize_many(texts, SqlType.parse("nvarchar(10)")) == [
        v.encode("utf-16-le") for v in texts
    ]


def test_denormalize_many_matches_denormalize() -> None:
    cells = [q(3), bytearray(q(-4)), memoryview(q(5))]
    assert denormalize_many(cells, "smallint") == [3, -4, 5]
    stamps = [dt.datetime(2020, 1, 2, 3, 4, 5, 6), dt.datetime(1, 1, 1)]
    assert denormalize_many(normalize_many(stamps, "datetime2"), "datetime2") == stamps


def test_many_names_the_failing_row() -> None:
    with pytest.raises(NormalizationError, match=r"^row 2: tinyint: out of range"):
        normalize_many([1, 2, 300, 4], "tinyint")
    with pytest.raises(NormalizationError, match=r"^row 1: bit: NULL is stored as SQL NULL"):
        normalize_many([True, None], "bit")
    with pytest.raises(NormalizationError, match=r"^row 1: int: normalized value must be 8"):
        denormalize_many([q(1), b"\x01"], "int")
    with pytest.raises(NormalizationError, match=r"^row 0: int: expected bytes, got int"):
        denormalize_many([1], "int")  # type: ignore[list-item]


def test_many_resolves_the_type_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real_resolve = normalize_module._resolve

    def counting(sql_type: SqlType | str) -> SqlType:
        calls.append(sql_type)
        return real_resolve(sql_type)

    monkeypatch.setattr(normalize_module, "_resolve", counting)
    normalize_many(list(range(100)), "decimal(10,2)")
    denormalize_many([q(1)] * 100, "int")
    assert calls == ["decimal(10,2)", "int"]


def test_docs_examples_run() -> None:
    doc = Path(__file__).resolve().parents[3] / "docs" / "normalization.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks
    for block in blocks:
        exec(compile(block, str(doc), "exec"), {})  # noqa: S102 - our own documentation
