"""`cleanroom keys create` / `data import` / `data show` against PostgreSQL (`--store`)."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from cleanroom.cli import main

pytestmark = pytest.mark.postgres

CSV = (
    "risk,age,sex,smoker,chestPain,bloodPressure,serumCholestoral,fastingBloodSugar,maxHeartRate\n"
    "1,63,1,,4,145,233,1,150\n"
)


@pytest.fixture
def store_url(postgres_url: str) -> str:
    return postgres_url


def test_cli_round_trip_on_postgres(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = str(tmp_path / "work")
    csv = tmp_path / "a.csv"
    csv.write_text(CSV)
    common = ["--party", "hospital_pg", "--workdir", work, "--store", store_url]
    assert main(["keys", "create", *common]) == 0
    assert main(["data", "import", "--csv", str(csv), *common]) == 0
    capsys.readouterr()
    assert main(["data", "show", *common]) == 0
    out = capsys.readouterr().out
    assert "233" in out
    assert not (tmp_path / "work" / "cleanroom.db").exists()  # nothing went to SQLite
    engine = sa.create_engine(store_url)
    with engine.connect() as conn:
        cell = conn.exec_driver_sql('SELECT "age" FROM ds_hospital_pg_medicalrecords').scalar()
    engine.dispose()
    assert isinstance(cell, bytes)
    assert cell[0] == 1  # an Always Encrypted cell in a BYTEA column
    assert len(cell) == 65
