"""One MedicalRecord CSV file per site: format, round trip, refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from cleanroom.data.files import check_site_name, read_medical_records_csv, write_sites_csv
from cleanroom.data.medical_record import MEDICAL_RECORD_COLUMN_NAMES
from cleanroom.data.synthetic import generate_sites
from cleanroom.errors import ConfigurationError, SchemaError

HEADER = ",".join(MEDICAL_RECORD_COLUMN_NAMES)


@pytest.fixture(scope="module")
def sites() -> dict[str, pd.DataFrame]:
    return generate_sites(3, 1000, 5)


def test_round_trip_and_format(tmp_path: Path, sites: dict[str, pd.DataFrame]) -> None:
    seen: list[tuple[str, int]] = []
    paths = write_sites_csv(
        sites, tmp_path / "out", chunk_rows=300, on_rows=lambda n, d: seen.append((n, d))
    )
    assert [p.name for p in paths.values()] == [f"{n}.csv" for n in sites]
    assert seen[:4] == [
        ("hospital-a", 300),
        ("hospital-a", 600),
        ("hospital-a", 900),
        ("hospital-a", 1000),
    ]
    for name, path in paths.items():
        pd.testing.assert_frame_equal(read_medical_records_csv(path), sites[name])
        lines = path.read_text(encoding="utf-8").split("\n")
        assert lines[0] == HEADER
        assert lines[-1] == ""
        assert len(lines) == 1002
        assert all(len(line.split(",")) == 9 for line in lines[1:-1])
    # Missing is an empty field, never NaN/<NA>.
    text = paths["hospital-c"].read_text(encoding="utf-8")
    assert ",," in text
    assert "NA" not in text
    assert "nan" not in text
    assert not [p for p in (tmp_path / "out").iterdir() if p.suffix != ".csv"]


def test_existing_files_are_kept_unless_overwrite(
    tmp_path: Path, sites: dict[str, pd.DataFrame]
) -> None:
    (tmp_path / "hospital-b.csv").write_text("keep me", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"hospital-b\.csv"):
        write_sites_csv(sites, tmp_path)
    # Checked before anything is written.
    assert not (tmp_path / "hospital-a.csv").exists()
    write_sites_csv(sites, tmp_path, overwrite=True)
    assert (tmp_path / "hospital-b.csv").read_text(encoding="utf-8").startswith(HEADER)


@pytest.mark.parametrize("name", ["", "-a", "A", "a/b", "..", "a.csv", "x" * 64, "hospital a"])
def test_unsafe_site_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError):
        check_site_name(name)


def test_bad_frames_are_refused_before_writing(
    tmp_path: Path, sites: dict[str, pd.DataFrame]
) -> None:
    bad = dict(sites)
    bad["hospital-z"] = sites["hospital-a"].astype("float64")
    with pytest.raises(SchemaError):
        write_sites_csv(bad, tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigurationError):
        write_sites_csv(sites, tmp_path, chunk_rows=0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("age,risk\n1,2\n", "header"),
        (HEADER + "\n0,63,1,,1,145,233,?,150\n", "'fastingBloodSugar', row 0: not a number"),
        (HEADER + "\n0,63,1,,1,145,233,NA,150\n", "not a number"),
        (HEADER + "\n,63,1,,1,145,233,1,150\n", "label is missing"),
        (HEADER + "\n0,63,1,,7,145,233,1,150\n", "'chestPain', row 0: outside 1..4"),
    ],
)
def test_bad_csv_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SchemaError, match=message):
        read_medical_records_csv(path)


def test_files_are_private_to_the_owner(tmp_path: Path, sites: dict[str, pd.DataFrame]) -> None:
    paths = write_sites_csv(sites, tmp_path)
    if os.name == "posix":
        assert paths["hospital-a"].stat().st_mode & 0o077 == 0
