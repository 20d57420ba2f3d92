"""The article's ``MedicalRecord``: column names, meanings, valid ranges and SQL types.

These are plain constants. The declarative dataset schema of :mod:`cleanroom.store`
builds the built-in MedicalRecord schema from them; the generators and loaders of this
package produce pandas DataFrames with exactly these columns, in this order (the label
``risk`` first, as in the article's class), with pandas nullable integer dtypes and
``<NA>`` for a missing value.

``risk`` is the UCI ``num`` attribute: 0 means no coronary artery disease (under 50 %
diameter narrowing of every major vessel), 1–4 increasing severity. It is a multi-class
label, not a probability.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from cleanroom.errors import SchemaError

#: The SQL types a MedicalRecord column may have (SQL Server names).
SqlType = Literal["bit", "tinyint", "smallint"]
#: What a column is to a learner.
ColumnKind = Literal["label", "categorical", "binary", "numeric"]

# pandas nullable dtype per SQL type: wide enough for the type's whole range.
PandasDtype = Literal["Int8", "Int16"]
_PANDAS_DTYPES: Final[Mapping[str, PandasDtype]] = {
    "bit": "Int8",
    "tinyint": "Int16",
    "smallint": "Int16",
}


@dataclass(frozen=True, kw_only=True)
class Column:
    """One MedicalRecord column.

    ``minimum``/``maximum`` bound the values this package accepts (inclusive); they are
    plausibility limits, not reference ranges. ``categories`` lists ``(code, meaning)``
    for label, categorical and binary columns.
    """

    name: str
    sql_type: SqlType
    kind: ColumnKind
    description: str
    minimum: int
    maximum: int
    unit: str = ""
    categories: tuple[tuple[int, str], ...] = ()

    @property
    def pandas_dtype(self) -> PandasDtype:
        """The pandas nullable integer dtype this package uses for the column."""
        return _PANDAS_DTYPES[self.sql_type]

    @property
    def codes(self) -> tuple[int, ...]:
        """The allowed codes of a label, categorical or binary column (empty if numeric)."""
        return tuple(code for code, _ in self.categories)


_NO_YES = ((0, "no"), (1, "yes"))

MEDICAL_RECORD_COLUMNS: Final[tuple[Column, ...]] = (
    Column(
        name="risk",
        sql_type="tinyint",
        kind="label",
        description="diagnosis of coronary artery disease (UCI `num`): 0 none, 1-4 increasing",
        minimum=0,
        maximum=4,
        categories=((0, "none"), (1, "mild"), (2, "moderate"), (3, "severe"), (4, "critical")),
    ),
    Column(
        name="age",
        sql_type="tinyint",
        kind="numeric",
        description="age in years",
        minimum=18,
        maximum=110,
        unit="years",
    ),
    Column(
        name="sex",
        sql_type="bit",
        kind="binary",
        description="sex: 0 female, 1 male",
        minimum=0,
        maximum=1,
        categories=((0, "female"), (1, "male")),
    ),
    Column(
        name="smoker",
        sql_type="bit",
        kind="binary",
        description="current smoker",
        minimum=0,
        maximum=1,
        categories=_NO_YES,
    ),
    Column(
        name="chestPain",
        sql_type="tinyint",
        kind="categorical",
        description="chest pain type",
        minimum=1,
        maximum=4,
        categories=(
            (1, "typical angina"),
            (2, "atypical angina"),
            (3, "non-anginal pain"),
            (4, "asymptomatic"),
        ),
    ),
    Column(
        name="bloodPressure",
        sql_type="smallint",
        kind="numeric",
        description="resting systolic blood pressure on admission",
        minimum=50,
        maximum=260,
        unit="mm Hg",
    ),
    Column(
        name="serumCholestoral",
        sql_type="smallint",
        kind="numeric",
        description="serum cholesterol (the article's spelling)",
        minimum=50,
        maximum=700,
        unit="mg/dl",
    ),
    Column(
        name="fastingBloodSugar",
        sql_type="bit",
        kind="binary",
        description="fasting blood sugar above 120 mg/dl",
        minimum=0,
        maximum=1,
        categories=_NO_YES,
    ),
    Column(
        name="maxHeartRate",
        sql_type="smallint",
        kind="numeric",
        description="maximum heart rate achieved in the exercise test",
        minimum=40,
        maximum=230,
        unit="beats/min",
    ),
)

#: Column names in file and frame order.
MEDICAL_RECORD_COLUMN_NAMES: Final[tuple[str, ...]] = tuple(c.name for c in MEDICAL_RECORD_COLUMNS)
#: The label column.
LABEL_COLUMN: Final[str] = "risk"
#: The feature columns (everything but the label), in order.
FEATURE_COLUMN_NAMES: Final[tuple[str, ...]] = tuple(
    c.name for c in MEDICAL_RECORD_COLUMNS if c.kind != "label"
)


def column(name: str) -> Column:
    """The MedicalRecord column called ``name``.

    Raises:
        SchemaError: there is no such column.
    """
    for col in MEDICAL_RECORD_COLUMNS:
        if col.name == name:
            return col
    raise SchemaError(f"MedicalRecord has no column {name!r}")


def as_medical_records(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` restricted to the MedicalRecord columns, in order, with their nullable dtypes.

    Floats must be whole numbers (``NaN`` becomes ``<NA>``). The result is checked with
    :func:`check_medical_records`.

    Raises:
        SchemaError: a column is absent, a value is fractional or out of range.
    """
    missing = [name for name in MEDICAL_RECORD_COLUMN_NAMES if name not in frame.columns]
    if missing:
        raise SchemaError(f"missing MedicalRecord column(s): {', '.join(missing)}")
    out = pd.DataFrame(index=frame.index)
    for col in MEDICAL_RECORD_COLUMNS:
        values = pd.to_numeric(frame[col.name], errors="coerce")
        not_numeric = values.isna() & frame[col.name].notna()
        if bool(not_numeric.any()):
            row = int(not_numeric.to_numpy().nonzero()[0][0])
            raise SchemaError(f"column {col.name!r}, row {row}: not a number")
        fractional = values.notna() & (values != values.round())
        if bool(fractional.any()):
            row = int(fractional.to_numpy().nonzero()[0][0])
            raise SchemaError(f"column {col.name!r}, row {row}: not a whole number")
        _check_range(col, values.to_numpy(dtype="float64", na_value=float("nan")))
        out[col.name] = values.round().astype(col.pandas_dtype)
    check_medical_records(out)
    return out


def check_medical_records(frame: pd.DataFrame) -> None:
    """Check that ``frame`` has exactly the MedicalRecord columns, dtypes and ranges.

    Missing values (``<NA>``) are allowed in every column but the label.

    Raises:
        SchemaError: naming the first offending column (and row, for a bad value).
    """
    if tuple(frame.columns) != MEDICAL_RECORD_COLUMN_NAMES:
        raise SchemaError(
            "columns must be " + ", ".join(MEDICAL_RECORD_COLUMN_NAMES) + " in that order"
        )
    for col in MEDICAL_RECORD_COLUMNS:
        series = frame[col.name]
        if str(series.dtype) != col.pandas_dtype:
            raise SchemaError(
                f"column {col.name!r} has dtype {series.dtype}, not {col.pandas_dtype}"
            )
        if col.kind == "label" and bool(series.isna().any()):
            row = int(series.isna().to_numpy().nonzero()[0][0])
            raise SchemaError(f"column {col.name!r}, row {row}: the label is missing")
        _check_range(col, series.to_numpy(dtype="float64", na_value=float("nan")))


def _check_range(col: Column, values: npt.NDArray[np.float64]) -> None:
    # Before any cast to a narrow integer type, so that 1e6 is "out of range", not an overflow.
    outside = (values < col.minimum) | (values > col.maximum)
    if bool(outside.any()):
        row = int(outside.nonzero()[0][0])
        raise SchemaError(f"column {col.name!r}, row {row}: outside {col.minimum}..{col.maximum}")


__all__ = [
    "FEATURE_COLUMN_NAMES",
    "LABEL_COLUMN",
    "MEDICAL_RECORD_COLUMNS",
    "MEDICAL_RECORD_COLUMN_NAMES",
    "Column",
    "ColumnKind",
    "SqlType",
    "as_medical_records",
    "check_medical_records",
    "column",
]
