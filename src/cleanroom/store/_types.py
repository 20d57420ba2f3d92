"""SQL column types of a dataset schema: parsing, value coercion, SQLAlchemy mapping.

The store keeps each column's SQL type as the SQL Server spelling (``"decimal(10,2)"``,
``"nvarchar(50)"``), because that string travels with the encrypted-column metadata and
decides how a value is normalized before encryption. This module turns the string into a
:class:`ColumnType` that can

* turn CSV text or a pandas/numpy value into the Python value the type expects
  (:meth:`ColumnType.coerce`), raising :class:`ValueError` *without the value* in the
  message, so that a sensitive value never reaches a log or an error line;
* give the SQLAlchemy type for a plaintext (not encrypted) column (:meth:`ColumnType.sa_type`).

Range checks for encrypted columns are repeated by the crypto normalizer; doing them here
too means a plaintext column gets the same checks and CSV import fails before writing.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from cleanroom.crypto.sqltypes import SqlType
from cleanroom.errors import NormalizationError

_INT_RANGES: dict[str, tuple[int, int]] = {
    "tinyint": (0, 255),
    "smallint": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
_STRING_TYPES = frozenset({"char", "varchar", "nchar", "nvarchar"})
_BINARY_TYPES = frozenset({"binary", "varbinary"})
_DATETIME_TYPES = frozenset({"datetime2", "datetime", "smalldatetime"})
_DECIMAL_TYPES = frozenset({"decimal", "numeric"})
_MONEY_RANGES: dict[str, tuple[int, int]] = {
    "money": (-(2**63), 2**63 - 1),
    "smallmoney": (-(2**31), 2**31 - 1),
}
#: Every SQL type a dataset column may have (what Always Encrypted can encrypt).
SUPPORTED_TYPES: frozenset[str] = frozenset(
    {"bit", "real", "float", "date", "time", "datetimeoffset", "uniqueidentifier"}
    | _INT_RANGES.keys()
    | _STRING_TYPES
    | _BINARY_TYPES
    | _DATETIME_TYPES
    | _DECIMAL_TYPES
    | _MONEY_RANGES.keys()
)
_MONEY_UNITS = 10**4
_FLOAT32_MAX = 3.4028234663852886e38
_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n"})


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    # pandas.NA / NaT without importing pandas here.
    return type(value).__name__ in {"NAType", "NaTType"}


@dataclass(frozen=True, slots=True)
class ColumnType:
    """A dataset column's SQL Server type: the crypto :class:`SqlType` plus coercion.

    ``sql_type`` decides normalization (and so the cell bytes); this class adds what an
    import needs on top: turning text and pandas values into that type's Python value, and
    the SQLAlchemy type that holds a plaintext column.
    """

    sql_type: SqlType

    @classmethod
    def parse(cls, text: str) -> ColumnType:
        """Parse ``text`` (case-insensitive, SQL Server spelling) or raise :class:`ValueError`."""
        try:
            return cls(SqlType.parse(text))
        except NormalizationError as error:
            raise ValueError(str(error)) from None

    @property
    def name(self) -> str:
        """The canonical type name (``"decimal"``, ``"nvarchar"``…)."""
        return self.sql_type.name

    @property
    def length(self) -> int | None:
        """Declared length of char/binary types; ``None`` for ``(max)`` and other types."""
        length = self.sql_type.length
        return length if isinstance(length, int) else None

    def __str__(self) -> str:
        return str(self.sql_type)

    @property
    def is_integer(self) -> bool:
        """True for bit and the integer types (their values are Python ``int``/``bool``)."""
        return self.name in _INT_RANGES or self.name == "bit"

    # -- coercion -------------------------------------------------------------------

    def coerce(self, value: Any) -> Any:
        """Turn ``value`` (CSV text, Python or numpy scalar) into this type's Python value.

        Missing values (``None``, NaN, ``pandas.NA``, and ``""`` for every type but the
        character types) become ``None``. Raises
        :class:`ValueError` whose message names the type but never the value.
        """
        if isinstance(value, str) and self.name not in _STRING_TYPES:
            value = value.strip()
            if value == "":
                return None
        if _is_missing(value):
            return None
        if hasattr(value, "item") and not isinstance(value, str | bytes):
            value = value.item()  # numpy scalar -> Python scalar
        try:
            return self._coerce(value)
        except (ArithmeticError, TypeError, ValueError):
            # The original exception may quote the value (``int("x7")`` does): drop it.
            raise ValueError(f"not a valid {self}") from None

    def coerce_many(self, values: Sequence[Any]) -> list[Any]:
        """:meth:`coerce` a whole column, with fast paths for CSV integers and bits.

        Raises :class:`ValueError` (without the value) if any one value is invalid; call
        :meth:`coerce` per value to find which.
        """
        name = self.name
        if name in _INT_RANGES:
            low, high = _INT_RANGES[name]
            return [_fast_int(v, low, high, self.coerce) for v in values]
        if name == "bit":
            return [
                _BIT_TEXT[v] if type(v) is str and v in _BIT_TEXT else self.coerce(v)
                for v in values
            ]
        return [self.coerce(v) for v in values]

    def _coerce(self, value: Any) -> Any:
        name = self.name
        if name == "bit":
            return _to_bit(value)
        if name in _INT_RANGES:
            number = _to_int(value)
            low, high = _INT_RANGES[name]
            if not low <= number <= high:
                raise ValueError("out of range")
            return number
        if name in {"real", "float"}:
            if isinstance(value, bool):
                raise TypeError
            real = float(value)
            if not math.isfinite(real) or (name == "real" and abs(real) > _FLOAT32_MAX):
                raise ValueError("not finite")
            return real
        if name in _DECIMAL_TYPES or name in _MONEY_RANGES:
            return self._to_decimal(value)
        if name == "date":
            return _to_date(value)
        if name == "time" or name == "datetimeoffset" or name in _DATETIME_TYPES:
            return self._to_temporal(value)
        if name == "uniqueidentifier":
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        if name in _BINARY_TYPES:
            return self._to_bytes(value)
        return self._to_str(value)

    def _to_decimal(self, value: Any) -> decimal.Decimal:
        if isinstance(value, bool | bytes):
            raise TypeError
        number = decimal.Decimal(str(value) if isinstance(value, float) else value)
        if not number.is_finite():
            raise ValueError("not finite")
        if self.name in _MONEY_RANGES:
            low, high = _MONEY_RANGES[self.name]
            units = number * _MONEY_UNITS
            if units != units.to_integral_value() or not low <= units <= high:
                raise ValueError("out of range")
            return number
        precision, scale = self.sql_type.precision, self.sql_type.scale
        assert precision is not None
        assert scale is not None
        quantum = decimal.Decimal(1).scaleb(-scale)
        with decimal.localcontext() as ctx:
            ctx.prec = 80
            rounded = number.quantize(quantum, rounding=decimal.ROUND_HALF_UP)
        if rounded != 0 and rounded.adjusted() >= precision - scale:
            raise ValueError("too many digits")
        return rounded

    def _to_temporal(self, value: Any) -> Any:
        if self.name == "time":
            if isinstance(value, dt.time):
                return value
            return dt.time.fromisoformat(str(value))
        if isinstance(value, str):
            parsed = dt.datetime.fromisoformat(value)
        elif isinstance(value, dt.datetime):
            parsed = value
        elif hasattr(value, "to_pydatetime"):
            parsed = value.to_pydatetime()
        else:
            raise TypeError
        if self.name in _DATETIME_TYPES:
            if parsed.tzinfo is not None:
                raise ValueError("takes no time zone")
            return parsed
        if parsed.tzinfo is None:
            raise ValueError("datetimeoffset needs a time zone")
        return parsed

    def _to_bytes(self, value: Any) -> bytes:
        if isinstance(value, str):
            data = bytes.fromhex(value.removeprefix("0x"))
        elif isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
        else:
            raise TypeError
        if self.length is not None and len(data) > self.length:
            raise ValueError("too long")
        return data

    def _to_str(self, value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError
        if self.length is not None:
            size = (
                len(value.encode("utf-16-le")) // 2
                if self.name.startswith("n")
                else len(value.encode("utf-8"))
            )
            if size > self.length:
                raise ValueError("too long")
        return value

    # -- storage ----------------------------------------------------------------------

    def sa_type(self) -> sa.types.TypeEngine[Any]:
        """The SQLAlchemy type that holds this type's plaintext on SQLite and PostgreSQL."""
        name = self.name
        mapping: dict[str, sa.types.TypeEngine[Any]] = {
            "bit": sa.Boolean(),
            "tinyint": sa.SmallInteger(),
            "smallint": sa.SmallInteger(),
            "int": sa.Integer(),
            "bigint": sa.BigInteger(),
            "real": sa.Float(precision=24),
            "float": sa.Float(precision=53),
            "money": sa.Numeric(19, 4, asdecimal=True),
            "smallmoney": sa.Numeric(10, 4, asdecimal=True),
            "datetime": sa.DateTime(),
            "smalldatetime": sa.DateTime(),
            "date": sa.Date(),
            "time": sa.Time(),
            "datetime2": sa.DateTime(),
            "datetimeoffset": sa.DateTime(timezone=True),
            "uniqueidentifier": sa.Uuid(),
        }
        if name in mapping:
            return mapping[name]
        if name in _DECIMAL_TYPES:
            return sa.Numeric(self.sql_type.precision, self.sql_type.scale, asdecimal=True)
        if name in _BINARY_TYPES:
            return sa.LargeBinary(self.length)
        return sa.Unicode(self.length) if self.length is not None else sa.UnicodeText()


_BIT_TEXT: dict[object, bool | None] = {"0": False, "1": True, "": None}


def _fast_int(value: Any, low: int, high: int, slow: Callable[[Any], Any]) -> Any:
    if type(value) is str and value.isdigit():  # ASCII/Unicode digits only, no sign
        number = int(value)
        if low <= number <= high:
            return number
        raise ValueError("out of range")
    if type(value) is int and low <= value <= high:
        return value
    return slow(value)


def _to_bit(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value in (0, 1):
            return bool(value)
        raise ValueError("not 0 or 1")
    if isinstance(value, float) and value in (0.0, 1.0):
        return bool(value)
    if isinstance(value, str):
        text = value.lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError("not a bit")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("not integral")
        return int(value)
    if isinstance(value, decimal.Decimal):
        if value != value.to_integral_value():
            raise ValueError("not integral")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            number = float(text)  # "63.0" from a spreadsheet export
            if not number.is_integer():
                raise
            return int(number)
    raise TypeError


def _to_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if hasattr(value, "to_pydatetime"):
        result: dt.date = value.to_pydatetime().date()
        return result
    return dt.date.fromisoformat(str(value))


__all__ = ["SUPPORTED_TYPES", "ColumnType"]
