import logging
import os
import pickle
from pathlib import Path

import pytest

from cleanroom.errors import ConfigurationError, EvidenceError
from cleanroom.tee import SimulatedLauncher
from cleanroom.tee.simulated import decode_simulated_evidence


def test_simulation_must_be_allowed_explicitly() -> None:
    with pytest.raises(ConfigurationError, match="allow_simulation"):
        SimulatedLauncher()
    with pytest.raises(ConfigurationError):
        SimulatedLauncher(allow_simulation=1)  # type: ignore[arg-type]


def test_every_use_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        launcher = SimulatedLauncher(allow_simulation=True)
        launcher.sign_report(measurement="00" * 48, config_id=None, report_data=b"a")
        launcher.sign_report(measurement="00" * 48, config_id=None, report_data=b"b")
    warnings = [r for r in caplog.records if "INSECURE" in r.getMessage()]
    assert len(warnings) == 3


def test_reports_decode_to_what_was_signed() -> None:
    launcher = SimulatedLauncher(allow_simulation=True, svn=7)
    evidence = launcher.sign_report(measurement="ab" * 48, config_id=b"\x05" * 32, report_data=b"r")
    decoded = decode_simulated_evidence(evidence.raw)
    report = decoded.report
    assert (report.measurement, report.config_id, report.svn) == (b"\xab" * 48, b"\x05" * 32, 7)
    assert report.debug is True
    assert report.report_data == b"r".ljust(64, b"\0")
    assert decoded.certificates[0].issuer == launcher.root_certificate.subject


@pytest.mark.parametrize("raw", [b"\xa0", b"not cbor at all \xff", b"\x83\x01\x02\x03"])
def test_malformed_evidence_is_an_evidence_error(raw: bytes) -> None:
    with pytest.raises(EvidenceError):
        decode_simulated_evidence(raw)


def test_workdir_persists_the_root_with_a_private_key_file(tmp_path: Path) -> None:
    first = SimulatedLauncher(allow_simulation=True, workdir=tmp_path / "sim")
    second = SimulatedLauncher(allow_simulation=True, workdir=tmp_path / "sim")
    assert first.root_certificate == second.root_certificate
    assert os.stat(tmp_path / "sim" / "simulation-root.key").st_mode & 0o777 == 0o600
    assert (tmp_path / "sim" / "simulation-root.pem").read_bytes() == first.root_certificate_pem
    assert "BEGIN" not in repr(first)
    with pytest.raises(TypeError):
        pickle.dumps(first)
