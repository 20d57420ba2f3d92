"""The `cleanroom keys` / `cleanroom data` commands, as a new user would try them."""

import shutil
from pathlib import Path

import pytest

from cleanroom.cli import main

HEADER = (
    "risk,age,sex,smoker,chestPain,bloodPressure,serumCholestoral,fastingBloodSugar,maxHeartRate"
)
GOOD = (
    HEADER
    + """
1,63,1,,4,145,233,1,150
0,41,0,0,2,130,204,0,172
"""
)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "command", [["keys", "create"], ["data", "import"], ["data", "show"], ["keys"], ["data"]]
)
def test_every_command_has_help_with_an_example(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0
    if len(command) == 2:
        assert "Example: cleanroom " + " ".join(command) in " ".join(out.split())
        assert "--workdir" in out
        assert "--store" in out


def test_create_import_show(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    work = str(tmp_path / "work")
    csv = tmp_path / "a.csv"
    csv.write_text(GOOD)
    code, out, err = run(capsys, "keys", "create", "--party", "hospital_a", "--workdir", work)
    assert (code, err) == (0, "")
    assert "CMK_hospital_a" in out
    assert "enclave-enabled" in out
    assert (tmp_path / "work" / "keys" / "hospital_a" / "cmk_hospital_a.pem").exists()
    code, out, err = run(
        capsys, "data", "import", "--party", "hospital_a", "--csv", str(csv), "--workdir", work
    )
    assert (code, err) == (0, "")
    assert "imported 2 rows" in out
    assert "9 of 9 columns encrypted" in out
    code, out, err = run(capsys, "data", "show", "--party", "hospital_a", "--workdir", work)
    assert code == 0
    assert "233" in out
    assert "172" in out
    assert "NULL" in out
    code, out, _ = run(
        capsys, "data", "show", "--party", "hospital_a", "--limit", "1", "--workdir", work
    )
    assert "233" in out
    assert "172" not in out


def test_missing_key_store_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "data", "show", "--party", "nobody", "--workdir", str(tmp_path))
    assert code == 14  # KeyStoreError
    assert "no key store for party 'nobody'" in err
    assert "cleanroom keys create --party nobody" in " ".join(err.split())
    assert "Traceback" not in err


def test_malformed_csv_is_one_clear_line_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    work = str(tmp_path / "work")
    run(capsys, "keys", "create", "--party", "hospital_a", "--workdir", work)
    bad = tmp_path / "bad.csv"
    bad.write_text(GOOD + "1,63,1,0,4,145,99999,1,150\n")
    code, _, err = run(
        capsys, "data", "import", "--party", "hospital_a", "--csv", str(bad), "--workdir", work
    )
    assert code == 21  # SchemaError
    flat = " ".join(err.split())
    assert "line 4" in flat
    assert "serumCholestoral" in flat
    assert "99999" not in flat  # an encrypted column's value is never echoed
    code, out, _ = run(capsys, "data", "show", "--party", "hospital_a", "--workdir", work)
    assert "0 of 0 rows" in out
    missing = tmp_path / "missing.csv"
    code, _, err = run(
        capsys, "data", "import", "--party", "hospital_a", "--csv", str(missing), "--workdir", work
    )
    assert code == 21
    assert "cannot read" in err


def test_wrong_key_is_one_clear_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    work = tmp_path / "work"
    csv = tmp_path / "a.csv"
    csv.write_text(GOOD)
    run(capsys, "keys", "create", "--party", "hospital_a", "--workdir", str(work))
    run(capsys, "keys", "create", "--party", "hospital_b", "--workdir", str(work))
    run(
        capsys, "data", "import", "--party", "hospital_a", "--csv", str(csv), "--workdir", str(work)
    )
    # Party A's key file replaced by another RSA key (B's): the wrapped CEK no longer verifies.
    keys = work / "keys"
    shutil.copyfile(
        keys / "hospital_b" / "cmk_hospital_b.pem", keys / "hospital_a" / "cmk_hospital_a.pem"
    )
    code, _, err = run(capsys, "data", "show", "--party", "hospital_a", "--workdir", str(work))
    assert code == 11  # KeyWrapError
    assert "signature does not verify" in " ".join(err.split())
    assert "Traceback" not in err


def test_keys_create_twice_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    work = str(tmp_path / "work")
    assert run(capsys, "keys", "create", "--party", "p", "--workdir", work)[0] == 0
    code, _, err = run(capsys, "keys", "create", "--party", "p", "--workdir", work)
    assert code != 0
    assert "already" in err


def test_bad_store_url_is_a_configuration_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys,
        "keys",
        "create",
        "--party",
        "p",
        "--workdir",
        str(tmp_path),
        "--store",
        "mysql://x/y",
    )
    assert code == 2
    assert "unsupported store backend" in err


def test_import_with_a_toml_schema(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    work = str(tmp_path / "work")
    schema = tmp_path / "visits.toml"
    schema.write_text(
        'table = "Visits"\nlabel = "risk"\n\n'
        '[[columns]]\nname = "risk"\ntype = "tinyint"\n\n'
        '[[columns]]\nname = "ward"\ntype = "nvarchar(10)"\nencrypted = false\n'
    )
    csv = tmp_path / "visits.csv"
    csv.write_text("ward,risk\nnorth,1\nsouth,\n")
    run(capsys, "keys", "create", "--party", "clinic", "--workdir", work)
    code, out, err = run(
        capsys, "data", "import", "--party", "clinic", "--csv", str(csv),
        "--schema", str(schema), "--workdir", work,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert "1 of 2 columns encrypted" in out
    code, out, _ = run(
        capsys, "data", "show", "--party", "clinic", "--dataset", "Visits", "--workdir", work
    )
    assert code == 0
    assert "north" in out
    assert "NULL" in out
    # The same table with another schema is refused.
    schema.write_text(schema.read_text().replace("nvarchar(10)", "nvarchar(20)"))
    code, _, err = run(
        capsys, "data", "import", "--party", "clinic", "--csv", str(csv),
        "--schema", str(schema), "--workdir", work,
    )  # fmt: skip
    assert code == 21
    assert "different schema" in err
