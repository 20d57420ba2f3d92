"""``cleanroom sql``: one statement, decrypted rows, JSON output, loud simulation flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cleanroom.cli import main


@pytest.fixture
def workdir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    work = tmp_path / "work"
    assert main(["keys", "create", "--party", "h", "--workdir", str(work)]) == 0
    (tmp_path / "d.csv").write_text("age,name\n30,al\n50,bo\n,cy\n")
    (tmp_path / "s.json").write_text(
        '{"table": "P", "columns": [{"name": "age", "type": "int"},'
        ' {"name": "name", "type": "nvarchar(20)", "encryption": "deterministic"}]}'
    )
    args = ["data", "import", "--party", "h", "--workdir", str(work)]
    assert (
        main([*args, "--csv", str(tmp_path / "d.csv"), "--schema", str(tmp_path / "s.json")]) == 0
    )
    capsys.readouterr()
    return work


def test_json_rows_with_positional_and_named_parameters(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["sql", "--party", "h", "--workdir", str(workdir), "--json", "--insecure-simulation"]
    assert (
        main([*base, "SELECT name, age FROM P WHERE age > ? ORDER BY age DESC", "--param", "20"])
        == 0
    )
    captured = capsys.readouterr()
    assert json.loads(captured.out) == [{"name": "bo", "age": 50}, {"name": "al", "age": 30}]
    assert "insecure-simulation" in captured.err
    assert main([*base, "SELECT COUNT(*), MAX(age) FROM P WHERE age < @a", "--param", "a=40"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"count(*)": 1, "max(age)": 30}]


def test_a_table_and_no_enclave_for_deterministic_equality(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["sql", "--party", "h", "--workdir", str(workdir), "SELECT * FROM P WHERE name = ?"]
    assert main([*args, "--param", "cy"]) == 0
    out = capsys.readouterr().out
    assert "cy" in out
    assert "NULL" in out


def test_enclave_work_without_the_flag_is_refused(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["sql", "--party", "h", "--workdir", str(workdir), "SELECT name FROM P WHERE age > 1"]
    )
    assert code == 20
    assert "literal" in capsys.readouterr().err
    code = main(
        [
            "sql",
            "--party",
            "h",
            "--workdir",
            str(workdir),
            "SELECT name FROM P WHERE age > ?",
            "--param",
            "1",
        ]
    )
    assert code == 20
    assert "--insecure-simulation" in capsys.readouterr().err


def test_alter_reports_the_rows(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    statement = "ALTER TABLE P ALTER COLUMN age int"
    args = ["sql", "--party", "h", "--workdir", str(workdir), "--insecure-simulation"]
    assert main([*args, statement]) == 0
    assert "3 rows affected" in capsys.readouterr().out
    assert main([*args, "--json", "SELECT age FROM P WHERE age > 40"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"age": 50}]
