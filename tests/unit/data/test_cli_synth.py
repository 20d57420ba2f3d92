"""``cleanroom synth`` as a new user would try it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cleanroom.cli import main
from cleanroom.data.files import read_medical_records_csv
from cleanroom.data.synthetic import generate_sites
from cleanroom.data.uci import load_uci_sites


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example: cleanroom synth --parties 4 --records 100000 --seed 0 --out" in out
    assert "--uci" in out


def test_writes_one_file_per_hospital(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "sites"
    args = ["synth", "--parties", "3", "--records", "400", "--seed", "2", "--out", str(out_dir)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    expected = generate_sites(3, 400, 2)
    assert sorted(p.name for p in out_dir.iterdir()) == [f"{n}.csv" for n in expected]
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(read_medical_records_csv(out_dir / f"{name}.csv"), frame)
        assert f"{name}.csv: 400 records" in printed
    # A second run refuses to overwrite, with one error line and exit status 2.
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err
    assert "Traceback" not in err
    assert main([*args, "--force"]) == 0


def test_uci_sites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "--uci", "--out", str(tmp_path)]) == 0
    assert "cleveland.csv: 303 records" in capsys.readouterr().out
    for name, frame in load_uci_sites().items():
        pd.testing.assert_frame_equal(read_medical_records_csv(tmp_path / f"{name}.csv"), frame)


@pytest.mark.parametrize(
    "args",
    [
        ["--uci", "--seed", "1"],
        ["--uci", "--parties", "4"],
        ["--parties", "0"],
        ["--records", "0"],
        ["--seed", "-1"],
    ],
)
def test_bad_options_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert main(["synth", *args, "--out", str(tmp_path / "x")]) == 2
    assert "error" in capsys.readouterr().err.lower()
    assert not (tmp_path / "x").exists()


def test_out_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth"]) == 2
    assert "--out" in capsys.readouterr().err
