from pathlib import Path

import pytest

from cleanroom.cli import main


@pytest.mark.parametrize(
    "args",
    [
        ["--simulation-root", "root.pem"],
        ["--insecure-simulation"],
        ["--tls-cert", "cert.pem"],
        ["--host", "192.0.2.1"],
        ["--insecure-simulation", "--simulation-root", "missing.pem"],
    ],
)
def test_contradictory_or_unsafe_options_are_refused(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["verifier", "serve", "--port", "1", *args]) == 2
    assert "error:" in capsys.readouterr().err


def test_help_mentions_the_insecure_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verifier", "serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--insecure-simulation" in out
    assert "Example" in out


def test_measure_prints_the_bundle_measurement(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from cleanroom.tee import build_bundle

    package = tmp_path / "cleanroom"
    package.mkdir()
    (package / "__init__.py").write_text("x = 1\n")
    expected = build_bundle(tmp_path / "b", package_dir=package).measurement
    assert main(["verifier", "measure", "--package-dir", str(package)]) == 0
    assert capsys.readouterr().out.strip() == expected
