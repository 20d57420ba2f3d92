"""`cleanroom keys create` / `data import` / `data show` against PostgreSQL (`--store`)."""

import os
import uuid
from collections.abc import Iterator
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
def store_url() -> Iterator[str]:
    base = os.environ.get("CLEANROOM_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("CLEANROOM_TEST_POSTGRES_URL is not set")
    schema = f"cr_cli_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError:
        admin.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is unreachable under CI")
        pytest.skip("PostgreSQL is unreachable")
    url = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


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
