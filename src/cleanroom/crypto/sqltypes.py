"""SQL Server column types, as far as Always Encrypted value normalization needs them.

A :class:`SqlType` is the declared type of an encrypted column: its name plus the length,
precision or scale that decide how a value is normalized to bytes before encryption (see
:mod:`cleanroom.crypto.normalize`). It is parsed from the type as written in DDL::

    >>> str(SqlType.parse("  DECIMAL ( 10 , 2 ) "))
    'decimal(10,2)'
    >>> SqlType.parse("nvarchar(max)").length
    'max'
    >>> SqlType.parse("datetime2").scale
    7

Defaults follow SQL Server DDL: ``decimal``/``numeric`` without arguments is ``(18,0)``,
``decimal(p)`` is ``(p,0)``; ``time``, ``datetime2`` and ``datetimeoffset`` default to scale 7;
``char``, ``varchar``, ``nchar``, ``nvarchar``, ``binary`` and ``varbinary`` without a length
have length 1. ``float(n)`` is ``real`` for n ≤ 24 and ``float`` otherwise. Synonyms
(``integer``, ``dec``, ``double precision``, ``character varying``, ``national character``,
``binary varying``, …) map to their canonical names.

Types that Always Encrypted cannot encrypt (``xml``, ``text``, ``ntext``, ``image``,
``sql_variant``, ``timestamp``/``rowversion``, ``json``, ``vector``, spatial and CLR types)
and names SQL Server does not know raise :class:`~cleanroom.errors.NormalizationError`
naming the type. Type names are schema, never patient data, so they may appear in messages.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import functools
import re
import uuid
from typing import Final, Literal

from cleanroom.errors import NormalizationError

#: The ``length`` of a ``varchar(max)``, ``nvarchar(max)`` or ``varbinary(max)`` column.
MAX: Final = "max"

#: Largest value of a ``(max)`` column, in bytes (2 GiB − 1).
MAX_LOB_BYTES: Final = 2**31 - 1

_NO_ARGS: Final = frozenset(
    {
        "bit",
        "tinyint",
        "smallint",
        "int",
        "bigint",
        "real",
        "float",
        "money",
        "smallmoney",
        "date",
        "datetime",
        "smalldatetime",
        "uniqueidentifier",
    }
)
_PRECISION_SCALE: Final = frozenset({"decimal", "numeric"})
_TIME_SCALE: Final = frozenset({"time", "datetime2", "datetimeoffset"})
# name -> (largest declared length, whether "(max)" is allowed, bytes per length unit)
_LENGTH: Final[dict[str, tuple[int, bool, int]]] = {
    "binary": (8000, False, 1),
    "varbinary": (8000, True, 1),
    "char": (8000, False, 1),
    "varchar": (8000, True, 1),
    "nchar": (4000, False, 2),
    "nvarchar": (4000, True, 2),
}

_SYNONYMS: Final[dict[str, str]] = {
    "integer": "int",
    "dec": "decimal",
    "double precision": "float",
    "character": "char",
    "char varying": "varchar",
    "character varying": "varchar",
    "national char": "nchar",
    "national character": "nchar",
    "nchar varying": "nvarchar",
    "national char varying": "nvarchar",
    "national character varying": "nvarchar",
    "binary varying": "varbinary",
}

_UNSUPPORTED: Final = frozenset(
    {
        "xml",
        "text",
        "ntext",
        "image",
        "sql_variant",
        "timestamp",
        "rowversion",
        "json",
        "vector",
        "hierarchyid",
        "geometry",
        "geography",
        "cursor",
        "table",
    }
)

# Fixed size of the normalized plaintext (rule version 1), in bytes.
_FIXED_SIZE: Final[dict[str, int]] = {
    "bit": 8,
    "tinyint": 8,
    "smallint": 8,
    "int": 8,
    "bigint": 8,
    "real": 4,
    "float": 8,
    "decimal": 17,
    "numeric": 17,
    "money": 8,
    "smallmoney": 8,
    "date": 3,
    "time": 5,
    "datetime2": 8,
    "datetimeoffset": 10,
    "datetime": 8,
    "smalldatetime": 4,
    "uniqueidentifier": 16,
}

_PYTHON_TYPE: Final[dict[str, type]] = {
    "bit": bool,
    "tinyint": int,
    "smallint": int,
    "int": int,
    "bigint": int,
    "real": float,
    "float": float,
    "decimal": decimal.Decimal,
    "numeric": decimal.Decimal,
    "money": decimal.Decimal,
    "smallmoney": decimal.Decimal,
    "date": datetime.date,
    "time": datetime.time,
    "datetime2": datetime.datetime,
    "datetimeoffset": datetime.datetime,
    "datetime": datetime.datetime,
    "smalldatetime": datetime.datetime,
    "uniqueidentifier": uuid.UUID,
    "binary": bytes,
    "varbinary": bytes,
    "char": str,
    "varchar": str,
    "nchar": str,
    "nvarchar": str,
}

_MAX_PRECISION: Final = 38
_MAX_TIME_SCALE: Final = 7
_SHOWN_CHARS: Final = 60

_TYPE_RE: Final = re.compile(
    r"""\s*\[?\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\s+[A-Za-z_][A-Za-z0-9_]*)*)\s*\]?\s*
        (?:\(\s*(?P<args>[^()]*?)\s*\)\s*)?""",
    re.VERBOSE,
)


def _shown(text: str) -> str:
    """``text`` as it may appear in a message: repr'd and cut short."""
    if len(text) > _SHOWN_CHARS:
        return repr(text[:_SHOWN_CHARS]) + "…"
    return repr(text)


@dataclasses.dataclass(frozen=True, slots=True)
class SqlType:
    """The declared SQL Server type of an encrypted column.

    Build one with :meth:`parse` (``SqlType.parse("decimal(10,2)")``) or directly with the
    canonical lower-case name and keyword arguments (``SqlType("decimal", precision=10,
    scale=2)``); omitted arguments take the SQL Server defaults. Only the fields that apply to
    the type are set, the others are ``None``:

    * ``length`` — ``binary``/``varbinary``/``char``/``varchar`` (bytes) and
      ``nchar``/``nvarchar`` (UTF-16 code units): an int, or :data:`MAX` for ``(max)``;
    * ``precision`` and ``scale`` — ``decimal``/``numeric``;
    * ``scale`` — fractional-second digits of ``time``, ``datetime2``, ``datetimeoffset``.

    Instances are immutable and hashable; ``str()`` gives the canonical spelling, which
    :meth:`parse` maps back to an equal instance.
    """

    name: str
    length: int | Literal["max"] | None = None
    precision: int | None = None
    scale: int | None = None

    def __post_init__(self) -> None:
        name = self.name
        if name in _UNSUPPORTED:
            raise NormalizationError(
                f"SQL type {_shown(name)} cannot be encrypted with Always Encrypted"
            )
        if name in _NO_ARGS:
            if self.length is not None or self.precision is not None or self.scale is not None:
                raise NormalizationError(f"SQL type {name} takes no length, precision or scale")
        elif name in _PRECISION_SCALE:
            self._init_decimal()
        elif name in _TIME_SCALE:
            if self.length is not None or self.precision is not None:
                raise NormalizationError(f"SQL type {name} takes only a scale")
            scale = _MAX_TIME_SCALE if self.scale is None else self.scale
            if type(scale) is not int or not 0 <= scale <= _MAX_TIME_SCALE:
                raise NormalizationError(f"SQL type {name}: scale must be 0 to 7")
            object.__setattr__(self, "scale", scale)
        elif name in _LENGTH:
            self._init_length()
        else:
            raise NormalizationError(f"unknown SQL type {_shown(name)}")

    def _init_decimal(self) -> None:
        name = self.name
        if self.length is not None:
            raise NormalizationError(f"SQL type {name} takes a precision and scale, not a length")
        precision = 18 if self.precision is None else self.precision
        scale = 0 if self.scale is None else self.scale
        if type(precision) is not int or not 1 <= precision <= _MAX_PRECISION:
            raise NormalizationError(f"SQL type {name}: precision must be 1 to 38")
        if type(scale) is not int or not 0 <= scale <= precision:
            raise NormalizationError(f"SQL type {name}: scale must be 0 to the precision")
        object.__setattr__(self, "precision", precision)
        object.__setattr__(self, "scale", scale)

    def _init_length(self) -> None:
        name = self.name
        if self.precision is not None or self.scale is not None:
            raise NormalizationError(f"SQL type {name} takes only a length")
        limit, max_allowed, _ = _LENGTH[name]
        length = 1 if self.length is None else self.length
        if length == MAX:
            if not max_allowed:
                raise NormalizationError(f"SQL type {name} cannot be (max)")
        elif type(length) is not int or not 1 <= length <= limit:
            raise NormalizationError(f"SQL type {name}: length must be 1 to {limit}")
        object.__setattr__(self, "length", length)

    @classmethod
    def parse(cls, text: str) -> SqlType:
        """Parse a SQL Server type as written in DDL, e.g. ``"decimal(10, 2)"``.

        Case-insensitive and whitespace-tolerant; a bracketed name (``[int]``) is accepted.
        Raises :class:`~cleanroom.errors.NormalizationError` for a malformed, unknown or
        unsupported type.
        """
        if not isinstance(text, str):
            raise TypeError(f"SQL type must be a str, got {type(text).__name__}")
        return _parse(text)

    def __str__(self) -> str:
        if self.name in _PRECISION_SCALE:
            return f"{self.name}({self.precision},{self.scale})"
        if self.name in _TIME_SCALE:
            return f"{self.name}({self.scale})"
        if self.name in _LENGTH:
            return f"{self.name}({self.length})"
        return self.name

    @property
    def python_type(self) -> type:
        """The Python type :func:`~cleanroom.crypto.normalize.denormalize` returns.

        ``datetimeoffset`` gives an aware :class:`datetime.datetime`; ``datetime2``,
        ``datetime`` and ``smalldatetime`` a naive one.
        """
        return _PYTHON_TYPE[self.name]

    @property
    def is_max(self) -> bool:
        """True for ``varchar(max)``, ``nvarchar(max)`` and ``varbinary(max)``."""
        return self.length == MAX

    @property
    def normalized_size(self) -> int | None:
        """Exact size of every normalized value in bytes, or ``None`` if it varies."""
        return _FIXED_SIZE.get(self.name)

    @property
    def max_normalized_size(self) -> int:
        """Largest possible normalized value in bytes (useful to size buffers and cells)."""
        fixed = _FIXED_SIZE.get(self.name)
        if fixed is not None:
            return fixed
        if self.length == MAX:
            return MAX_LOB_BYTES
        assert isinstance(self.length, int)
        return self.length * _LENGTH[self.name][2]


@functools.lru_cache(maxsize=1024)
def _parse(text: str) -> SqlType:
    match = _TYPE_RE.fullmatch(text)
    if match is None:
        raise NormalizationError(f"malformed SQL type {_shown(text)}")
    name = " ".join(match["name"].lower().split())
    name = _SYNONYMS.get(name, name)
    raw_args = match["args"]
    args: list[int | Literal["max"]] = []
    if raw_args is not None:
        for part in raw_args.split(","):
            token = part.strip().lower()
            if token == MAX:
                args.append(MAX)
            elif token.isascii() and token.isdigit():
                args.append(int(token))
            else:
                raise NormalizationError(f"malformed SQL type {_shown(text)}")
    if name == "float":
        return _parse_float(args)
    if name in _UNSUPPORTED or (name not in _NO_ARGS and name not in _PYTHON_TYPE):
        return SqlType(name)  # raises the unsupported/unknown error
    if not args:
        return SqlType(name)
    if name in _NO_ARGS:
        raise NormalizationError(f"SQL type {name} takes no arguments")
    if MAX in args and name not in _LENGTH:
        raise NormalizationError(f"SQL type {name} cannot be (max)")
    if name in _PRECISION_SCALE and len(args) <= 2:
        precision = args[0]
        scale = args[1] if len(args) == 2 else None
        assert isinstance(precision, int)
        assert scale is None or isinstance(scale, int)
        return SqlType(name, precision=precision, scale=scale)
    if name in _TIME_SCALE and len(args) == 1:
        assert isinstance(args[0], int)
        return SqlType(name, scale=args[0])
    if name in _LENGTH and len(args) == 1:
        return SqlType(name, length=args[0])
    raise NormalizationError(f"SQL type {name}: wrong number of arguments")


def _parse_float(args: list[int | Literal["max"]]) -> SqlType:
    if not args:
        return SqlType("float")
    bits = args[0]
    if len(args) != 1 or not isinstance(bits, int) or not 1 <= bits <= 53:
        raise NormalizationError("SQL type float(n): n must be 1 to 53")
    return SqlType("real" if bits <= 24 else "float")


__all__ = ["MAX", "MAX_LOB_BYTES", "SqlType"]
