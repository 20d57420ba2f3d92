"""The packaged UCI Heart Disease data and its mapping onto the MedicalRecord."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cleanroom.data.files import read_medical_records_csv
from cleanroom.data.medical_record import MEDICAL_RECORD_COLUMN_NAMES, check_medical_records
from cleanroom.data.uci import (
    UCI_RECORD_COUNTS,
    UCI_SITES,
    load_uci_site,
    load_uci_sites,
    read_uci_file,
    uci_provenance,
    write_uci_csv,
)
from cleanroom.errors import ConfigurationError

PACKAGED = resources.files("cleanroom.data").joinpath("uci_heart_disease")


@pytest.fixture(scope="module")
def sites() -> dict[str, pd.DataFrame]:
    return load_uci_sites()


def test_packaged_files_match_the_provenance_checksums() -> None:
    provenance = uci_provenance()
    listed = dict(re.findall(r"(processed\.\w+\.data)\s+([0-9a-f]{32})", provenance))
    assert len(listed) == 4
    listed["reprocessed.hungarian.data"] = "3698a53d41cccc2e4499e1273c055378"
    for name, md5 in listed.items():
        data = PACKAGED.joinpath(name).read_bytes()
        assert hashlib.md5(data, usedforsecurity=False).hexdigest() == md5, name
    for credit in ("Janosi", "Steinbrunn", "Pfisterer", "Detrano", "CC BY 4.0"):
        assert credit in provenance
    assert "Aha" in PACKAGED.joinpath("heart-disease.names").read_text(encoding="ascii")


def test_row_counts_match_the_files(sites: dict[str, pd.DataFrame]) -> None:
    assert list(sites) == ["cleveland", "hungarian", "switzerland", "va"] == list(UCI_SITES)
    assert {name: len(frame) for name, frame in sites.items()} == {
        "cleveland": 303,
        "hungarian": 294,
        "switzerland": 123,
        "va": 200,
    }
    assert dict(UCI_RECORD_COUNTS) == {name: len(frame) for name, frame in sites.items()}
    for frame in sites.values():
        assert tuple(frame.columns) == MEDICAL_RECORD_COLUMN_NAMES
        check_medical_records(frame)


def test_smoker_is_never_invented(sites: dict[str, pd.DataFrame]) -> None:
    for frame in sites.values():
        assert bool(frame["smoker"].isna().all())


def test_question_marks_and_zeros_are_missing(sites: dict[str, pd.DataFrame]) -> None:
    va_raw = read_uci_file("processed.va.data")
    va = sites["va"]
    # '?' or 0 in the file ↔ missing in the frame, cell by cell.
    for attribute, column in (("chol", "serumCholestoral"), ("trestbps", "bloodPressure")):
        absent = va_raw[attribute].isna() | (va_raw[attribute] == 0)
        assert va[column].isna().tolist() == absent.tolist()
    assert int((va_raw["chol"] == 0).sum()) == 49
    assert va["maxHeartRate"].isna().tolist() == va_raw["thalach"].isna().tolist()
    assert int(va["maxHeartRate"].isna().sum()) == 53
    # Switzerland wrote 0 for every cholesterol.
    assert bool((read_uci_file("processed.switzerland.data")["chol"] == 0).all())
    assert bool(sites["switzerland"]["serumCholestoral"].isna().all())
    assert int(sites["switzerland"]["fastingBloodSugar"].isna().sum()) == 75
    # Cleveland is complete in these columns.
    assert int(sites["cleveland"].drop(columns="smoker").isna().sum().sum()) == 0


def test_values_are_copied_not_altered(sites: dict[str, pd.DataFrame]) -> None:
    raw = read_uci_file("processed.cleveland.data")
    cleveland = sites["cleveland"]
    assert cleveland.iloc[0].tolist()[:3] == [0, 63, 1]
    for attribute, column in (
        ("age", "age"),
        ("sex", "sex"),
        ("cp", "chestPain"),
        ("trestbps", "bloodPressure"),
        ("chol", "serumCholestoral"),
        ("fbs", "fastingBloodSugar"),
        ("thalach", "maxHeartRate"),
        ("num", "risk"),
    ):
        np.testing.assert_array_equal(cleveland[column].to_numpy(dtype=float), raw[attribute])


def test_label_mix_is_the_uci_num(sites: dict[str, pd.DataFrame]) -> None:
    counts = {name: f["risk"].value_counts().sort_index().tolist() for name, f in sites.items()}
    assert counts == {
        "cleveland": [164, 55, 36, 35, 13],
        "hungarian": [188, 37, 26, 28, 15],
        "switzerland": [8, 48, 32, 30, 5],
        "va": [51, 56, 41, 42, 10],
    }


def test_hungarian_uses_the_reprocessed_labels_for_the_same_patients(
    sites: dict[str, pd.DataFrame],
) -> None:
    processed = read_uci_file("processed.hungarian.data")
    hungarian = sites["hungarian"]

    def rows(frame: pd.DataFrame) -> Counter[tuple[float, ...]]:
        values = frame.to_numpy(dtype=float)
        return Counter(tuple(np.nan_to_num(row, nan=-1.0)) for row in values)

    features = ["age", "sex", "cp", "trestbps", "chol", "fbs", "thalach"]
    mapped = ["age", "sex", "chestPain", "bloodPressure", "serumCholestoral"]
    mapped += ["fastingBloodSugar", "maxHeartRate"]
    # The same 294 patients (in another order), with num 0-4 instead of 0/1.
    assert rows(processed[features]) == rows(hungarian[mapped])
    assert rows(processed[[*features, "num"]]) == rows(
        hungarian[mapped].assign(any=(hungarian["risk"] > 0).astype(float))
    )
    assert sorted(processed["num"].unique()) == [0, 1]


def test_unknown_site_or_file() -> None:
    with pytest.raises(ConfigurationError, match="cleveland"):
        load_uci_site("boston")
    with pytest.raises(ConfigurationError):
        read_uci_file("PROVENANCE.md")
    with pytest.raises(ConfigurationError):
        read_uci_file("../uci.py")


def test_write_uci_csv_round_trips(tmp_path: Path, sites: dict[str, pd.DataFrame]) -> None:
    paths = write_uci_csv(tmp_path)
    assert sorted(p.name for p in paths.values()) == [
        "cleveland.csv",
        "hungarian.csv",
        "switzerland.csv",
        "va.csv",
    ]
    for name, path in paths.items():
        pd.testing.assert_frame_equal(read_medical_records_csv(path), sites[name])
    header, first = paths["switzerland"].read_text(encoding="utf-8").splitlines()[:2]
    assert header == ",".join(MEDICAL_RECORD_COLUMN_NAMES)
    assert first == "1,32,1,,1,95,,,127"
    with pytest.raises(ConfigurationError, match="overwrite"):
        write_uci_csv(tmp_path)
    write_uci_csv(tmp_path, overwrite=True)
