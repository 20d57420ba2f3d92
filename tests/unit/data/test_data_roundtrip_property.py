"""Any valid MedicalRecord frame survives a CSV file unchanged (hypothesis)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.data.files import read_medical_records_csv, write_sites_csv
from cleanroom.data.medical_record import MEDICAL_RECORD_COLUMNS, as_medical_records


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(min_value=1, max_value=30))
    data: dict[str, list[float]] = {}
    for col in MEDICAL_RECORD_COLUMNS:
        value = st.integers(min_value=col.minimum, max_value=col.maximum).map(float)
        if col.kind != "label":
            value = value | st.just(float("nan"))
        data[col.name] = draw(st.lists(value, min_size=n, max_size=n))
    return as_medical_records(pd.DataFrame(data))


@settings(max_examples=40, deadline=None)
@given(frame=frames(), chunk=st.integers(min_value=1, max_value=40))
def test_csv_round_trip(
    tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame, chunk: int
) -> None:
    out = tmp_path_factory.mktemp("rt")
    paths = write_sites_csv({"site": frame}, out, chunk_rows=chunk)
    pd.testing.assert_frame_equal(read_medical_records_csv(paths["site"]), frame)
