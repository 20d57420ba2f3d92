"""Typed values ↔ the bytes SQL Server Always Encrypted encrypts (normalization rule version 1).

Always Encrypted never encrypts a value's on-the-wire TDS form: the client first *normalizes*
it to a fixed byte layout chosen by the column's declared type, and the cell cipher encrypts
those bytes. Deterministic encryption is only useful if every client produces the same bytes
for the same value, so the layouts below follow the reference driver (.NET SqlClient
``SerializeUnencryptedValue`` / ``DeserializeUnencryptedValue``; mssql-jdbc agrees) byte for
byte. All integers are little-endian.

=====================================  ======  ===============================================
SQL type                               bytes   layout
=====================================  ======  ===============================================
``bit``                                8       int64 0 or 1
``tinyint``/``smallint``/``int``/      8       int64, whatever the declared width, so values
``bigint``                                     compare equal across integer columns
``real``                               4       IEEE-754 binary32
``float``                              8       IEEE-754 binary64
``decimal(p,s)``/``numeric(p,s)``      17      sign byte (1 = positive or zero, 0 = negative) ‖
                                               unscaled integer at scale ``s`` as 128-bit
                                               unsigned (4 × uint32, low word first)
``money``/``smallmoney``               8       value×10⁴ as int64, high int32 first, then low
                                               uint32 (TDS money order)
``date``                               3       uint24 days since 0001-01-01
``time(n)``                            5       uint40 100-ns ticks since midnight, truncated
                                               to scale ``n`` but always in 100-ns units
``datetime2(n)``                       8       time(n) bytes ‖ date bytes
``datetimeoffset(n)``                  10      datetime2(n) bytes of the UTC instant ‖ int16
                                               offset in minutes
``datetime``                           8       int32 days since 1900-01-01 ‖ uint32 1/300-s
                                               ticks since midnight (.NET ``SqlDateTime``
                                               rounding)
``smalldatetime``                      4       uint16 days since 1900-01-01 ‖ uint16 minutes
``uniqueidentifier``                   16      .NET ``Guid.ToByteArray()`` order, which is
                                               :attr:`uuid.UUID.bytes_le`
``binary(n)``/``varbinary(n|max)``     ≤ n     the bytes as given (no padding)
``nchar(n)``/``nvarchar(n|max)``       ≤ 2n    UTF-16LE, no BOM, no padding
``char(n)``/``varchar(n|max)``         ≤ n     UTF-8, no padding (see below)
=====================================  ======  ===============================================

**char/varchar are UTF-8.** SQL Server encodes ``char``/``varchar`` in the code page of the
column's collation, and deterministic encryption of character columns requires a ``*_BIN2``
collation. cleanroom assumes a ``*_UTF8_BIN2`` collation (e.g. ``Latin1_General_100_BIN2_UTF8``):
the code page is UTF-8 and equality is byte equality, so equal strings give equal cells. A
column under a legacy (non-UTF-8) code page matches these bytes only for ASCII text.

**Which Python values are accepted.** Each type takes its natural Python type, and nothing
that could silently change a value:

* ``bit``: ``bool``, or the ints 0 and 1. Integer types: ``int`` (and other
  :class:`numbers.Integral`, e.g. NumPy ints) but **not** ``bool`` — a ``True`` in an
  ``int`` column is almost always a mistake — and not ``float`` (convert explicitly, e.g. use
  a nullable integer dtype in pandas).
* ``real``/``float``: ``float``, ``int``, :class:`decimal.Decimal` or any
  :class:`numbers.Real`; ``real`` rounds to the nearest binary32. NaN and ±∞ are rejected, as
  are values too large for the type.
* ``decimal``/``numeric``/``money``/``smallmoney``: :class:`decimal.Decimal`, ``int``, or
  ``float`` — a float is taken by its shortest repr (``0.1`` → ``Decimal("0.1")``), which is
  what a person reading it means. The value is rounded to the column scale with
  ``ROUND_HALF_UP`` (half away from zero, like SqlClient and JDBC), then rejected if it has
  more than ``p`` digits (or leaves the money range).
* ``date``: :class:`datetime.date` but not a ``datetime`` (its time would be dropped).
  ``time``: a naive :class:`datetime.time`, or a :class:`datetime.timedelta` in [0, 24 h).
  ``datetime2``/``datetime``/``smalldatetime``: a naive :class:`datetime.datetime`.
  ``datetimeoffset``: an *aware* ``datetime`` whose offset is a whole number of minutes
  within ±14:00.
* ``uniqueidentifier``: :class:`uuid.UUID`. ``binary``/``varbinary``: ``bytes``,
  ``bytearray`` or ``memoryview``. Character types: ``str`` (an unpaired surrogate is
  rejected). Lengths are checked against the declared length (bytes for ``binary``/``char``,
  UTF-16 code units for ``nchar``); values are never silently truncated.
* ``None`` is rejected: SQL NULL is stored as NULL and never encrypted.

**Reading back.** :func:`denormalize` checks the byte length and range for the type and
returns the Python type above. Like .NET it right-pads ``binary(n)`` with zero bytes and
``char(n)``/``nchar(n)`` with spaces to the declared length. Python datetimes hold
microseconds, so a seventh fractional digit (100 ns) written by another client is truncated.
``datetimeoffset`` comes back with a fixed-offset :class:`datetime.timezone`.

**Errors.** Every failure is a :class:`~cleanroom.errors.NormalizationError` (a
``ValueError``) whose message names the SQL type and the problem but never contains the value
(values are patient data): no original exception is chained to it for the same reason.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import functools
import math
import numbers
import struct
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias

from cleanroom.crypto.sqltypes import MAX, MAX_LOB_BYTES, SqlType
from cleanroom.errors import NormalizationError

#: The only normalization rule version Always Encrypted defines.
NORMALIZATION_RULE_VERSION: Final = 1

#: What :func:`denormalize` returns (see :attr:`SqlType.python_type`).
SqlValue: TypeAlias = (
    bool
    | int
    | float
    | decimal.Decimal
    | datetime.date
    | datetime.time
    | datetime.datetime
    | uuid.UUID
    | bytes
    | str
)

_Encoder: TypeAlias = Callable[[object], bytes]
_Decoder: TypeAlias = Callable[[bytes], SqlValue]

_INT64: Final = struct.Struct("<q")
_FLOAT32: Final = struct.Struct("<f")
_FLOAT64: Final = struct.Struct("<d")
_MONEY: Final = struct.Struct("<iI")
_DATETIME: Final = struct.Struct("<iI")
_SMALLDATETIME: Final = struct.Struct("<HH")
_OFFSET: Final = struct.Struct("<h")

_INT_RANGES: Final[dict[str, tuple[int, int]]] = {
    "tinyint": (0, 255),
    "smallint": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
_MONEY_RANGES: Final[dict[str, tuple[int, int]]] = {
    "money": (-(2**63), 2**63 - 1),
    "smallmoney": (-(2**31), 2**31 - 1),
}

_TICKS_PER_SECOND: Final = 10_000_000
# 100-ns ticks per unit of the last fractional digit at scale 0..7.
_SCALE_UNIT: Final = (10_000_000, 1_000_000, 100_000, 10_000, 1000, 100, 10, 1)
_TICKS_PER_DAY: Final = 86_400 * _TICKS_PER_SECOND
_MAX_DATE_DAYS: Final = datetime.date.max.toordinal() - 1  # 9999-12-31
_MAX_OFFSET_MINUTES: Final = 14 * 60
_EPOCH_1900: Final = datetime.datetime(1900, 1, 1)
# SqlDateTime: 1/300-s ticks; day range 1753-01-01 .. 9999-12-31 relative to 1900-01-01.
_SQL_TICKS_PER_DAY: Final = 300 * 86_400
_SQL_TICKS_PER_MINUTE: Final = 300 * 60
_SQL_TICKS_PER_MILLISECOND: Final = 0.3
_DATETIME_MIN_DAY: Final = (datetime.date(1753, 1, 1) - datetime.date(1900, 1, 1)).days
_DATETIME_MAX_DAY: Final = (datetime.date(9999, 12, 31) - datetime.date(1900, 1, 1)).days
_SMALLDATETIME_MAX_DAY: Final = 0xFFFF  # 2079-06-06
# Decimal arithmetic on at most 39 significant digits, exact.
_DECIMAL_CONTEXT: Final = decimal.Context(prec=80, rounding=decimal.ROUND_HALF_UP)
_QUANTUM: Final = tuple(decimal.Decimal(1).scaleb(-s) for s in range(39))


@dataclasses.dataclass(frozen=True, slots=True)
class _Codec:
    encode: _Encoder
    decode: _Decoder


# ---------------------------------------------------------------------------------------------
# public API


def normalize(value: object, sql_type: SqlType | str) -> bytes:
    """Normalize ``value`` to the bytes Always Encrypted encrypts for a column of ``sql_type``.

    ``sql_type`` is a :class:`SqlType` or a type string such as ``"decimal(10,2)"``. Raises
    :class:`~cleanroom.errors.NormalizationError` when the value has the wrong Python type,
    is out of range, NaN/∞, too long, or ``None``; the message never contains the value.
    """
    return _codec(_resolve(sql_type)).encode(value)


def denormalize(data: bytes | bytearray | memoryview, sql_type: SqlType | str) -> SqlValue:
    """Read a normalized value of ``sql_type`` back into Python (the inverse of :func:`normalize`).

    Raises :class:`~cleanroom.errors.NormalizationError` when ``data`` has the wrong length
    or holds a value outside the type's range.
    """
    t = _resolve(sql_type)
    return _codec(t).decode(_as_bytes(t, data))


def normalize_many(values: Sequence[object], sql_type: SqlType | str) -> list[bytes]:
    """:func:`normalize` a whole column; the type is resolved once, not per value.

    On failure the :class:`~cleanroom.errors.NormalizationError` names the row index.
    """
    encode = _codec(_resolve(sql_type)).encode
    try:
        return [encode(v) for v in values]
    except NormalizationError:
        _raise_with_row(encode, values)
        raise


def denormalize_many(
    data: Sequence[bytes | bytearray | memoryview], sql_type: SqlType | str
) -> list[SqlValue]:
    """:func:`denormalize` a whole column; the type is resolved once, not per value."""
    t = _resolve(sql_type)
    decode = _codec(t).decode

    def one(item: bytes | bytearray | memoryview) -> SqlValue:
        return decode(item if type(item) is bytes else _as_bytes(t, item))

    try:
        return [one(item) for item in data]
    except NormalizationError:
        _raise_with_row(one, data)
        raise


# ---------------------------------------------------------------------------------------------
# plumbing


def _resolve(sql_type: SqlType | str) -> SqlType:
    if isinstance(sql_type, SqlType):
        return sql_type
    if isinstance(sql_type, str):
        return SqlType.parse(sql_type)
    raise TypeError(f"sql_type must be a SqlType or str, got {type(sql_type).__name__}")


def _raise_with_row(function: Callable[[Any], object], items: Sequence[Any]) -> None:
    """Find the first item ``function`` rejects and re-raise its error with the row index."""
    for index, item in enumerate(items):
        try:
            function(item)
        except NormalizationError as error:
            raise NormalizationError(f"row {index}: {error}") from None


def _error(t: SqlType, problem: str) -> NormalizationError:
    return NormalizationError(f"{t}: {problem}")


def _wrong_type(t: SqlType, expected: str, value: object) -> NormalizationError:
    if value is None:
        return _error(t, "NULL is stored as SQL NULL and never normalized or encrypted")
    return _error(t, f"expected {expected}, got {type(value).__name__}")


def _as_bytes(t: SqlType, data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise _wrong_type(t, "bytes", data)


def _check_size(t: SqlType, data: bytes, size: int) -> None:
    if len(data) != size:
        raise _error(t, f"normalized value must be {size} bytes, got {len(data)}")


@functools.lru_cache(maxsize=512)
def _codec(t: SqlType) -> _Codec:
    name = t.name
    if name == "bit":
        return _bit_codec(t)
    if name in _INT_RANGES:
        return _int_codec(t, *_INT_RANGES[name])
    if name == "real":
        return _float_codec(t, _FLOAT32)
    if name == "float":
        return _float_codec(t, _FLOAT64)
    if name in ("decimal", "numeric"):
        return _decimal_codec(t)
    if name in _MONEY_RANGES:
        return _money_codec(t, *_MONEY_RANGES[name])
    if name == "date":
        return _Codec(functools.partial(_encode_date, t), functools.partial(_decode_date, t))
    if name == "time":
        return _time_codec(t)
    if name == "datetime2":
        return _datetime2_codec(t)
    if name == "datetimeoffset":
        return _datetimeoffset_codec(t)
    if name == "datetime":
        return _Codec(
            functools.partial(_encode_datetime, t), functools.partial(_decode_datetime, t)
        )
    if name == "smalldatetime":
        return _Codec(
            functools.partial(_encode_smalldatetime, t),
            functools.partial(_decode_smalldatetime, t),
        )
    if name == "uniqueidentifier":
        return _Codec(functools.partial(_encode_uuid, t), functools.partial(_decode_uuid, t))
    if name in ("binary", "varbinary"):
        return _binary_codec(t)
    if name in ("char", "varchar", "nchar", "nvarchar"):
        return _string_codec(t)
    raise _error(t, "has no normalization")  # pragma: no cover - SqlType admits no other names


# ---------------------------------------------------------------------------------------------
# bit and integers


def _bit_codec(t: SqlType) -> _Codec:
    true, false = _INT64.pack(1), _INT64.pack(0)

    def encode(value: object) -> bytes:
        if value is True or value is False:
            return true if value else false
        if isinstance(value, numbers.Integral):
            if value == 1:
                return true
            if value == 0:
                return false
            raise _error(t, "an integer bit value must be 0 or 1")
        raise _wrong_type(t, "bool", value)

    def decode(data: bytes) -> bool:
        if data == true:
            return True
        if data == false:
            return False
        _check_size(t, data, 8)
        raise _error(t, "stored value is neither 0 nor 1")

    return _Codec(encode, decode)


def _as_int(t: SqlType, value: object) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    raise _wrong_type(t, "int", value)


def _int_codec(t: SqlType, low: int, high: int) -> _Codec:
    pack, unpack = _INT64.pack, _INT64.unpack
    out_of_range = f"out of range [{low}, {high}]"

    def encode(value: object) -> bytes:
        number = value if type(value) is int else _as_int(t, value)
        if low <= number <= high:
            return pack(number)
        raise _error(t, out_of_range)

    def decode(data: bytes) -> int:
        if len(data) != 8:
            _check_size(t, data, 8)
        (number,) = unpack(data)
        if low <= number <= high:
            return int(number)
        raise _error(t, f"stored value {out_of_range}")

    return _Codec(encode, decode)


# ---------------------------------------------------------------------------------------------
# real and float


def _as_float(t: SqlType, value: object) -> float:
    if type(value) is float:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real | decimal.Decimal):
        raise _wrong_type(t, "float", value)
    # Errors are raised after the except clauses so no original exception (which may
    # carry the value) is chained to ours; the same pattern recurs below.
    try:
        number = float(value)
    except OverflowError:
        problem = "out of range"
    except ValueError:  # a signalling NaN
        problem = "NaN and infinities cannot be stored"
    else:
        if not math.isinf(number) or not isinstance(value, decimal.Decimal):
            return number
        problem = "NaN and infinities cannot be stored" if value.is_infinite() else "out of range"
    raise _error(t, problem)


def _float_codec(t: SqlType, layout: struct.Struct) -> _Codec:
    pack, unpack, size = layout.pack, layout.unpack, layout.size
    isfinite = math.isfinite

    def encode(value: object) -> bytes:
        number = _as_float(t, value)
        if not isfinite(number):
            raise _error(t, "NaN and infinities cannot be stored")
        try:
            return pack(number)
        except OverflowError:
            pass
        raise _error(t, "out of range")

    def decode(data: bytes) -> float:
        if len(data) != size:
            _check_size(t, data, size)
        (number,) = unpack(data)
        if not isfinite(number):
            raise _error(t, "stored value is NaN or infinite")
        return float(number)

    return _Codec(encode, decode)


# ---------------------------------------------------------------------------------------------
# decimal, numeric, money, smallmoney


def _as_decimal(t: SqlType, value: object) -> decimal.Decimal:
    if isinstance(value, decimal.Decimal):
        number = value
    elif isinstance(value, float):
        # float.__repr__, not repr(): a NumPy float's repr is "np.float64(…)".
        number = decimal.Decimal(float.__repr__(value))
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        number = decimal.Decimal(int(value))
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = decimal.Decimal(float.__repr__(float(value)))
    else:
        raise _wrong_type(t, "Decimal", value)
    if not number.is_finite():
        raise _error(t, "NaN and infinities cannot be stored")
    return number


def _unscaled(t: SqlType, number: decimal.Decimal, scale: int, integer_digits: int) -> int:
    """``number`` × 10^scale rounded half away from zero, if it has ≤ integer_digits digits
    before the point; raises otherwise. Exact for every value that fits."""
    if number and number.adjusted() >= integer_digits:
        raise _error(t, "too many digits for the type")
    try:
        rounded = number.quantize(_QUANTUM[scale], context=_DECIMAL_CONTEXT)
        return int(rounded.scaleb(scale, context=_DECIMAL_CONTEXT))
    except decimal.DecimalException:  # pragma: no cover - excluded by the digit check above
        pass
    raise _error(t, "cannot be rescaled to the type")  # pragma: no cover


def _decimal_codec(t: SqlType) -> _Codec:
    precision, scale = t.precision, t.scale
    assert precision is not None
    assert scale is not None
    limit = 10**precision
    integer_digits = precision - scale

    def encode(value: object) -> bytes:
        unscaled = _unscaled(t, _as_decimal(t, value), scale, integer_digits)
        if unscaled < 0:
            sign, magnitude = b"\x00", -unscaled
        else:
            sign, magnitude = b"\x01", unscaled
        if magnitude >= limit:  # rounding carried into one more digit
            raise _error(t, "too many digits for the type")
        return sign + magnitude.to_bytes(16, "little")

    def decode(data: bytes) -> decimal.Decimal:
        if len(data) != 17:
            _check_size(t, data, 17)
        sign = data[0]
        if sign > 1:
            raise _error(t, "stored sign byte is neither 0 nor 1")
        magnitude = int.from_bytes(data[1:], "little")
        if magnitude >= limit:
            raise _error(t, "stored value has too many digits for the type")
        negative = sign == 0 and magnitude != 0
        return decimal.Decimal(f"{'-' if negative else ''}{magnitude}E-{scale}")

    return _Codec(encode, decode)


def _money_codec(t: SqlType, low: int, high: int) -> _Codec:
    pack, unpack = _MONEY.pack, _MONEY.unpack

    def encode(value: object) -> bytes:
        unscaled = _unscaled(t, _as_decimal(t, value), 4, 19 - 4)
        if not low <= unscaled <= high:
            raise _error(t, "out of range")
        return pack(unscaled >> 32, unscaled & 0xFFFFFFFF)

    def decode(data: bytes) -> decimal.Decimal:
        if len(data) != 8:
            _check_size(t, data, 8)
        high_word, low_word = unpack(data)
        unscaled = (high_word << 32) | low_word
        if not low <= unscaled <= high:
            raise _error(t, "stored value out of range")
        return decimal.Decimal(f"{unscaled}E-4")

    return _Codec(encode, decode)


# ---------------------------------------------------------------------------------------------
# date and time


def _encode_date(t: SqlType, value: object) -> bytes:
    if not isinstance(value, datetime.date) or isinstance(value, datetime.datetime):
        raise _wrong_type(t, "date", value)
    return (value.toordinal() - 1).to_bytes(3, "little")


def _days_to_date(t: SqlType, data: bytes) -> datetime.date:
    days = int.from_bytes(data, "little")
    if days > _MAX_DATE_DAYS:
        raise _error(t, "stored date out of range")
    return datetime.date.fromordinal(days + 1)


def _decode_date(t: SqlType, data: bytes) -> datetime.date:
    _check_size(t, data, 3)
    return _days_to_date(t, data)


def _ticks_of(value: datetime.time | datetime.datetime) -> int:
    """100-ns ticks since midnight (a pandas Timestamp contributes its nanoseconds)."""
    seconds = value.hour * 3600 + value.minute * 60 + value.second
    ticks = (seconds * 1_000_000 + value.microsecond) * 10
    if type(value) is not datetime.datetime and type(value) is not datetime.time:
        nanosecond = getattr(value, "nanosecond", 0)
        if isinstance(nanosecond, int):
            ticks += nanosecond // 100
    return ticks


def _ticks_to_time(t: SqlType, ticks: int) -> datetime.time:
    if ticks >= _TICKS_PER_DAY:
        raise _error(t, "stored time of day out of range")
    microseconds = ticks // 10
    seconds, microsecond = divmod(microseconds, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return datetime.time(hour, minute, second, microsecond)


def _time_codec(t: SqlType) -> _Codec:
    assert t.scale is not None
    unit = _SCALE_UNIT[t.scale]

    def encode(value: object) -> bytes:
        if isinstance(value, datetime.time):
            if value.tzinfo is not None:
                raise _error(t, "expected a naive time (time has no time zone)")
            ticks = _ticks_of(value)
        elif isinstance(value, datetime.timedelta):
            if not datetime.timedelta(0) <= value < datetime.timedelta(days=1):
                raise _error(t, "a timedelta must be within [0, 24 h)")
            ticks = int(value // datetime.timedelta(microseconds=1)) * 10
        else:
            raise _wrong_type(t, "time", value)
        return (ticks // unit * unit).to_bytes(5, "little")

    def decode(data: bytes) -> datetime.time:
        _check_size(t, data, 5)
        return _ticks_to_time(t, int.from_bytes(data, "little"))

    return _Codec(encode, decode)


def _encode_datetime2(t: SqlType, value: datetime.datetime, unit: int) -> bytes:
    ticks = _ticks_of(value) // unit * unit
    days = value.toordinal() - 1
    return ticks.to_bytes(5, "little") + days.to_bytes(3, "little")


def _decode_datetime2(t: SqlType, data: bytes) -> datetime.datetime:
    time = _ticks_to_time(t, int.from_bytes(data[:5], "little"))
    return datetime.datetime.combine(_days_to_date(t, data[5:8]), time)


def _datetime2_codec(t: SqlType) -> _Codec:
    assert t.scale is not None
    unit = _SCALE_UNIT[t.scale]

    def encode(value: object) -> bytes:
        if not isinstance(value, datetime.datetime):
            raise _wrong_type(t, "datetime", value)
        if value.tzinfo is not None and value.utcoffset() is not None:
            raise _error(t, "expected a naive datetime (use datetimeoffset for aware ones)")
        return _encode_datetime2(t, value, unit)

    def decode(data: bytes) -> datetime.datetime:
        _check_size(t, data, 8)
        return _decode_datetime2(t, data)

    return _Codec(encode, decode)


@functools.lru_cache(maxsize=2 * _MAX_OFFSET_MINUTES + 1)
def _fixed_zone(minutes: int) -> datetime.timezone:
    if minutes == 0:
        return datetime.UTC
    return datetime.timezone(datetime.timedelta(minutes=minutes))


def _datetimeoffset_codec(t: SqlType) -> _Codec:
    assert t.scale is not None
    unit = _SCALE_UNIT[t.scale]
    pack, unpack = _OFFSET.pack, _OFFSET.unpack

    def encode(value: object) -> bytes:
        if not isinstance(value, datetime.datetime):
            raise _wrong_type(t, "aware datetime", value)
        offset = value.utcoffset()
        if offset is None:
            raise _error(t, "expected an aware datetime (with a UTC offset), got a naive one")
        minutes, rest = divmod(offset, datetime.timedelta(minutes=1))
        if rest or not -_MAX_OFFSET_MINUTES <= minutes <= _MAX_OFFSET_MINUTES:
            raise _error(t, "the UTC offset must be whole minutes within ±14:00")
        try:
            utc = value.replace(tzinfo=None) - offset
        except OverflowError:
            utc = None
        if utc is None:
            raise _error(t, "the UTC instant is out of range")
        return _encode_datetime2(t, utc, unit) + pack(minutes)

    def decode(data: bytes) -> datetime.datetime:
        _check_size(t, data, 10)
        utc = _decode_datetime2(t, data)
        (minutes,) = unpack(data[8:])
        if not -_MAX_OFFSET_MINUTES <= minutes <= _MAX_OFFSET_MINUTES:
            raise _error(t, "stored UTC offset out of range")
        try:
            local = utc + datetime.timedelta(minutes=minutes)
        except OverflowError:
            local = None
        if local is None:
            raise _error(t, "stored local time out of range")
        return local.replace(tzinfo=_fixed_zone(minutes))

    return _Codec(encode, decode)


def _sql_datetime(t: SqlType, value: object) -> tuple[int, int]:
    """(days since 1900-01-01, 1/300-s ticks) exactly as .NET ``SqlDateTime`` rounds them."""
    if not isinstance(value, datetime.datetime):
        raise _wrong_type(t, "datetime", value)
    if value.tzinfo is not None and value.utcoffset() is not None:
        raise _error(t, "expected a naive datetime")
    delta = value.replace(tzinfo=None) - _EPOCH_1900
    days = delta.days
    ticks = (delta.seconds * 1_000_000 + delta.microseconds) * 10
    # Same double arithmetic as SqlDateTime.FromTimeSpan, so ties round identically.
    sql_ticks = int(ticks / 10000.0 * _SQL_TICKS_PER_MILLISECOND + 0.5)
    if sql_ticks >= _SQL_TICKS_PER_DAY:
        sql_ticks = 0
        days += 1
    return days, sql_ticks


def _sql_datetime_to_python(days: int, sql_ticks: int) -> datetime.datetime:
    # As SqlDateTime.ToDateTime: back to whole milliseconds, rounded.
    milliseconds = int(sql_ticks / _SQL_TICKS_PER_MILLISECOND + 0.5)
    return _EPOCH_1900 + datetime.timedelta(days=days, milliseconds=milliseconds)


def _encode_datetime(t: SqlType, value: object) -> bytes:
    days, sql_ticks = _sql_datetime(t, value)
    if not _DATETIME_MIN_DAY <= days <= _DATETIME_MAX_DAY:
        raise _error(t, "out of range (1753-01-01 to 9999-12-31 23:59:59.997)")
    return _DATETIME.pack(days, sql_ticks)


def _decode_datetime(t: SqlType, data: bytes) -> datetime.datetime:
    _check_size(t, data, 8)
    days, sql_ticks = _DATETIME.unpack(data)
    if not _DATETIME_MIN_DAY <= days <= _DATETIME_MAX_DAY or sql_ticks >= _SQL_TICKS_PER_DAY:
        raise _error(t, "stored value out of range")
    return _sql_datetime_to_python(days, sql_ticks)


def _encode_smalldatetime(t: SqlType, value: object) -> bytes:
    days, sql_ticks = _sql_datetime(t, value)
    if not 0 <= days <= _SMALLDATETIME_MAX_DAY:
        raise _error(t, "out of range (1900-01-01 to 2079-06-06 23:59)")
    # SqlClient truncates to the minute (SQL Server itself would round).
    return _SMALLDATETIME.pack(days, sql_ticks // _SQL_TICKS_PER_MINUTE)


def _decode_smalldatetime(t: SqlType, data: bytes) -> datetime.datetime:
    _check_size(t, data, 4)
    days, minutes = _SMALLDATETIME.unpack(data)
    if minutes >= 24 * 60:
        raise _error(t, "stored value out of range")
    return _EPOCH_1900 + datetime.timedelta(days=days, minutes=minutes)


# ---------------------------------------------------------------------------------------------
# uniqueidentifier, binary, character


def _encode_uuid(t: SqlType, value: object) -> bytes:
    if not isinstance(value, uuid.UUID):
        raise _wrong_type(t, "uuid.UUID", value)
    return value.bytes_le


def _decode_uuid(t: SqlType, data: bytes) -> uuid.UUID:
    _check_size(t, data, 16)
    return uuid.UUID(bytes_le=data)


def _max_units(t: SqlType) -> int:
    if t.length == MAX:
        return MAX_LOB_BYTES // (2 if t.name in ("nchar", "nvarchar") else 1)
    assert isinstance(t.length, int)
    return t.length


def _binary_codec(t: SqlType) -> _Codec:
    limit = _max_units(t)
    pad = t.name == "binary"
    too_long = f"longer than {limit} bytes"

    def encode(value: object) -> bytes:
        if isinstance(value, bytes):
            data = value
        elif isinstance(value, bytearray | memoryview):
            data = bytes(value)
        else:
            raise _wrong_type(t, "bytes", value)
        if len(data) > limit:
            raise _error(t, too_long)
        return data

    def decode(data: bytes) -> bytes:
        if len(data) > limit:
            raise _error(t, f"stored value {too_long}")
        return data.ljust(limit, b"\x00") if pad else data

    return _Codec(encode, decode)


def _string_codec(t: SqlType) -> _Codec:
    wide = t.name in ("nchar", "nvarchar")
    encoding, unit = ("utf-16-le", 2) if wide else ("utf-8", 1)
    limit = _max_units(t)
    pad = t.name in ("char", "nchar")
    too_long = f"longer than {limit} {'UTF-16 code units' if wide else 'bytes'}"

    def encode(value: object) -> bytes:
        if not isinstance(value, str):
            raise _wrong_type(t, "str", value)
        try:
            data = value.encode(encoding)
        except UnicodeEncodeError:
            data = None
        if data is None:
            raise _error(t, "the string contains an unpaired surrogate")
        if len(data) > limit * unit:
            raise _error(t, too_long)
        return data

    def decode(data: bytes) -> str:
        if len(data) % unit:
            raise _error(t, "normalized UTF-16 value has an odd number of bytes")
        units = len(data) // unit
        if units > limit:
            raise _error(t, f"stored value {too_long}")
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            text = None
        if text is None:
            raise _error(t, f"stored value is not valid {encoding.upper()}")
        return text + " " * (limit - units) if pad else text

    return _Codec(encode, decode)


__all__ = [
    "NORMALIZATION_RULE_VERSION",
    "SqlValue",
    "denormalize",
    "denormalize_many",
    "normalize",
    "normalize_many",
]
