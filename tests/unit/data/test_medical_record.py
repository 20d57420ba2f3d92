"""The MedicalRecord column constants and the frame check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cleanroom.data.medical_record import (
    FEATURE_COLUMN_NAMES,
    LABEL_COLUMN,
    MEDICAL_RECORD_COLUMN_NAMES,
    MEDICAL_RECORD_COLUMNS,
    as_medical_records,
    check_medical_records,
    column,
)
from cleanroom.errors import SchemaError


def _frame(**overrides: list[float]) -> pd.DataFrame:
    data: dict[str, list[float]] = {
        "risk": [0, 2],
        "age": [63, 45],
        "sex": [1, 0],
        "smoker": [np.nan, 1],
        "chestPain": [1, 4],
        "bloodPressure": [145, 120],
        "serumCholestoral": [233, np.nan],
        "fastingBloodSugar": [1, 0],
        "maxHeartRate": [150, 171],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def test_columns_are_the_articles_in_order() -> None:
    assert MEDICAL_RECORD_COLUMN_NAMES == (
        "risk",
        "age",
        "sex",
        "smoker",
        "chestPain",
        "bloodPressure",
        "serumCholestoral",
        "fastingBloodSugar",
        "maxHeartRate",
    )
    assert LABEL_COLUMN == "risk"
    assert MEDICAL_RECORD_COLUMN_NAMES[1:] == FEATURE_COLUMN_NAMES
    assert [c.kind for c in MEDICAL_RECORD_COLUMNS].count("label") == 1


def test_column_metadata() -> None:
    assert column("risk").codes == (0, 1, 2, 3, 4)
    assert column("chestPain").kind == "categorical"
    assert dict(column("chestPain").categories)[4] == "asymptomatic"
    assert column("sex").sql_type == "bit"
    assert column("bloodPressure").sql_type == "smallint"
    for col in MEDICAL_RECORD_COLUMNS:
        assert col.minimum < col.maximum
        if col.categories:
            assert (min(col.codes), max(col.codes)) == (col.minimum, col.maximum)
    with pytest.raises(SchemaError):
        column("Age")


def test_as_medical_records_types_and_missing() -> None:
    frame = as_medical_records(_frame().assign(extra=[1, 2]))
    assert tuple(frame.columns) == MEDICAL_RECORD_COLUMN_NAMES
    assert str(frame["sex"].dtype) == "Int8"
    assert str(frame["bloodPressure"].dtype) == "Int16"
    assert frame["smoker"].isna().tolist() == [True, False]
    check_medical_records(frame)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"risk": [0, 5]}, "'risk', row 1: outside 0..4"),
        ({"risk": [np.nan, 1]}, "label is missing"),
        ({"chestPain": [0, 1]}, "'chestPain', row 0"),
        ({"age": [63.5, 45]}, "not a whole number"),
        ({"sex": [1, 2]}, "'sex', row 1"),
        ({"bloodPressure": [0, 120]}, "'bloodPressure', row 0"),
        ({"bloodPressure": [120, 1e6]}, "'bloodPressure', row 1: outside 50..260"),
        ({"age": [float("inf"), 45]}, "'age', row 0: outside"),
    ],
)
def test_bad_values_are_refused_with_column_and_row(
    overrides: dict[str, list[float]], message: str
) -> None:
    with pytest.raises(SchemaError, match=message):
        as_medical_records(_frame(**overrides))


def test_text_and_missing_columns_are_refused() -> None:
    with pytest.raises(SchemaError, match="row 1: not a number"):
        as_medical_records(_frame().assign(age=["63", "old"]))
    with pytest.raises(SchemaError, match="missing MedicalRecord column"):
        as_medical_records(_frame().drop(columns="smoker"))


def test_check_wants_exact_columns_and_dtypes() -> None:
    good = as_medical_records(_frame())
    with pytest.raises(SchemaError, match="in that order"):
        check_medical_records(good[list(reversed(good.columns))])
    with pytest.raises(SchemaError, match="dtype"):
        check_medical_records(good.astype({"age": "float64"}))
