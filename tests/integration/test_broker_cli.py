"""``cleanroom broker serve`` as a real process on loopback: it releases a key to an
attested (simulated) enclave, logs the decision, and refuses contradictory flags."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from joserfc.jwk import ECKey

from cleanroom.broker import fetch_cek, verify_decision_log
from cleanroom.client import Workspace
from cleanroom.contract import Contract, ContractRegistry, SigningKey
from cleanroom.errors import PolicyViolation
from cleanroom.tee import Evidence, SimulatedLauncher

PARTY = "hospital_a"
CLI = [sys.executable, "-c", "import sys; from cleanroom.cli import main; sys.exit(main())"]


class LauncherPlatform:
    """Signs through the launcher as its report channel does (launcher-chosen measurement)."""

    def __init__(self, launcher: SimulatedLauncher, measurement: str, config_id: str) -> None:
        self._launcher, self._measurement = launcher, measurement
        self._config_id = bytes.fromhex(config_id)

    @property
    def tee(self) -> str:
        return "simulated"

    def evidence(self, report_data: bytes) -> Evidence:
        return self._launcher.sign_report(
            measurement=self._measurement, config_id=self._config_id, report_data=report_data
        )


def _contract(key: SigningKey, measurement: str) -> Contract:
    recipient = ECKey.generate_key("P-256", private=True).as_dict(private=False)
    return Contract.from_mapping(
        {
            "id": "cli-test",
            "title": "CLI test",
            "version": 1,
            "created": "2026-01-01T00:00:00Z",
            "expires": "2099-01-01T00:00:00Z",
            "parties": [
                {
                    "name": PARTY,
                    "signing_key": key.public_key.to_pem(),
                    "broker_url": "http://127.0.0.1:8701",
                    "recipient_key": {k: recipient[k] for k in ("kty", "crv", "x", "y")},
                }
            ],
            "datasets": [
                {
                    "party": PARTY,
                    "table": "MedicalRecords",
                    "schema": "medical_record",
                    "min_rows": 1,
                }
            ],
            "algorithm": {
                "name": "multinomial_logistic_regression",
                "features": ["age"],
                "label": "num",
                "split": {"train_fraction": 0.8},
                "metrics": ["micro_accuracy"],
            },
            "enclave": {
                "tee_types": ["simulated"],
                "reference_measurements": [measurement],
                "allow_simulation": True,
            },
        }
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, LauncherPlatform, str]]:
    workdir = tmp_path / "work"
    workspace = Workspace(workdir=workdir)
    client = workspace.client(PARTY, create_key_store=True)
    client.create_keys()
    client.create_dataset()
    cek_hex = client.column_encryption_key(f"CEK_{PARTY}").secret_bytes().hex()
    launcher = SimulatedLauncher(allow_simulation=True, workdir=tmp_path / "sim")
    measurement = "5e" * 48
    key = SigningKey.generate()
    contract = _contract(key, measurement)
    registry = ContractRegistry(client.store)
    registry.submit(contract)
    registry.sign(contract.hash, PARTY, key)
    client.store.close()
    process = subprocess.Popen(
        [
            *CLI,
            "broker",
            "serve",
            "--party",
            PARTY,
            "--workdir",
            str(workdir),
            "--port",
            "0",
            "--insecure-simulation",
            "--simulation-root",
            str(tmp_path / "sim" / "simulation-root.pem"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, (
            process.stderr.read() if process.stderr else ""
        )
        url = line.rsplit(" ", 1)[-1].strip()
        platform = LauncherPlatform(launcher, measurement, contract.hash)
        yield url, workdir, platform, cek_hex
    finally:
        process.terminate()
        process.wait(timeout=20)
        stderr = process.stderr.read() if process.stderr else ""
        assert cek_hex not in stderr
        assert "INSECURE" in stderr or "--insecure-simulation" in stderr
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_served_broker_releases_and_refuses(
    served: tuple[str, Path, LauncherPlatform, str],
) -> None:
    url, workdir, platform, cek_hex = served
    cek = fetch_cek(url, platform=platform, party=PARTY, cek_name=f"CEK_{PARTY}")
    assert cek.secret_bytes().hex() == cek_hex
    with pytest.raises(PolicyViolation) as refused:
        fetch_cek(url, platform=platform, party="hospital_b", cek_name="CEK_hospital_b")
    assert refused.value.rule == "resource"
    log = workdir / "broker" / PARTY / "decisions.jsonl"
    assert verify_decision_log(log) == 4  # attested, released, attested, refused
    text = log.read_text()
    assert cek_hex not in text
    assert '"decision":"released"' in text
    assert '"decision":"refused"' in text


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--insecure-simulation"], "--insecure-simulation needs"),
        (["--simulation-root", "x.pem"], "needs --insecure-simulation"),
        (["--host", "192.0.2.1"], "loopback only"),
        (["--tls-cert", "c.pem"], "go together"),
    ],
)
def test_contradictory_flags_are_refused(tmp_path: Path, flags: list[str], message: str) -> None:
    done = subprocess.run(
        [*CLI, "broker", "serve", "--party", PARTY, "--workdir", str(tmp_path), *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
