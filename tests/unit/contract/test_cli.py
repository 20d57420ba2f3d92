"""``cleanroom contract``: keygen → init → sign → verify → revoke through the real command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cleanroom.cli import main
from cleanroom.contract import Contract
from cleanroom.errors import (
    EXIT_CODES,
    ConfigurationError,
    ConsentMissing,
    ContractError,
    SignatureInvalid,
)

MEASUREMENT = "ab" * 48
EXIT = dict(EXIT_CODES)


def _run(*args: str) -> int:
    return main(list(args))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    wd = tmp_path / "work"
    for party, alg in (("hospital_a", "ed25519"), ("hospital_b", "p256")):
        assert (
            _run("contract", "keygen", "--party", party, "--algorithm", alg, "--workdir", str(wd))
            == 0
        )
    return wd


def test_the_whole_flow(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wd = str(workdir)
    key_a = workdir / "parties" / "hospital_a" / "signing-key.pem"
    assert key_a.stat().st_mode & 0o777 == 0o600
    assert _run("contract", "init", "--tee", "sev-snp", "--measurement", MEASUREMENT,
                "--broker", "hospital_a=https://a.example:8443", "--workdir", wd) == 0  # fmt: skip
    contract = Contract.from_json((workdir / "contract.json").read_text())
    assert contract.party_names == ("hospital_a", "hospital_b")
    assert contract.party("hospital_b").broker_url == "http://127.0.0.1:8602"
    # Each party's broker key is pinned: the enclave accepts its receipts under no other.
    broker_pub = workdir / "parties" / "hospital_b" / "broker-key.pub.pem"
    assert contract.party("hospital_b").broker_key == broker_pub.read_text()
    assert (broker_pub.parent / "broker-key.pem").stat().st_mode & 0o777 == 0o600
    assert not contract.enclave.allow_simulation
    capsys.readouterr()

    assert _run("contract", "verify", "--workdir", wd) == EXIT[ContractError]  # not submitted
    assert _run("contract", "sign", "--party", "hospital_a", "--workdir", wd) == 0
    assert "waiting for: hospital_b" in capsys.readouterr().out
    assert _run("contract", "verify", "--workdir", wd) == EXIT[ConsentMissing]
    assert "not signed by hospital_b" in capsys.readouterr().err
    # hospital_a's key presented for hospital_b
    assert _run("contract", "sign", "--party", "hospital_b", "--key", str(key_a),
                "--workdir", wd) == EXIT[ContractError]  # fmt: skip
    assert "not the signing key" in capsys.readouterr().err
    assert _run("contract", "sign", "--party", "hospital_b", "--workdir", wd) == 0
    assert _run("contract", "verify", "--workdir", wd) == 0
    out = capsys.readouterr().out
    assert "in force  yes" in out
    assert contract.hash in out

    assert _run("contract", "show", "--workdir", wd) == 0
    shown = capsys.readouterr().out
    assert '"id": "cleanroom"' in shown
    assert "signed    hospital_a, hospital_b" in shown

    assert _run("contract", "revoke", "--party", "hospital_b", "--yes", "--workdir", wd) == 0
    assert (
        _run("contract", "verify", "--hash", contract.hash, "--workdir", wd) == EXIT[ConsentMissing]
    )
    assert "revoked by hospital_b" in capsys.readouterr().err
    # an edited contract is a new hash with no signatures
    document = json.loads((workdir / "contract.json").read_text())
    document["version"] = 2
    (workdir / "v2.json").write_text(json.dumps(document))
    assert _run("contract", "submit", "--contract", str(workdir / "v2.json"), "--workdir", wd) == 0
    assert _run("contract", "verify", "--contract", str(workdir / "v2.json"),
                "--workdir", wd) == EXIT[ConsentMissing]  # fmt: skip


def test_init_refusals(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wd = str(workdir)
    assert _run("contract", "init", "--workdir", wd) == EXIT[ConfigurationError]
    assert "--insecure-simulation" in capsys.readouterr().err
    assert _run("contract", "init", "--tee", "tdx", "--workdir", wd) == EXIT[ConfigurationError]
    assert _run("contract", "init", "--tee", "tdx", "--measurement", MEASUREMENT,
                "--workdir", wd) == 0  # fmt: skip
    assert _run("contract", "init", "--tee", "tdx", "--measurement", MEASUREMENT,
                "--workdir", wd) == EXIT[ConfigurationError]  # fmt: skip
    assert "exists" in capsys.readouterr().err
    assert (
        _run("contract", "keygen", "--party", "hospital_a", "--workdir", wd)
        == EXIT[ConfigurationError]
    )


def test_insecure_simulation_measures_this_package(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("contract", "init", "--insecure-simulation", "--workdir", str(workdir)) == 0
    assert "simulated TEE (insecure)" in capsys.readouterr().err
    contract = Contract.from_json((workdir / "contract.json").read_text())
    assert contract.enclave.allow_simulation
    assert contract.enclave.tee_types == ("simulated",)
    assert len(contract.enclave.reference_measurements[0]) == 96  # SHA-384


def test_offline_approval_handed_to_the_operator(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wd = str(workdir)
    assert _run("contract", "init", "--tee", "tdx", "--measurement", MEASUREMENT,
                "--workdir", wd) == 0  # fmt: skip
    approvals = {}
    for party in ("hospital_a", "hospital_b"):
        path = workdir / f"{party}.approval.json"
        assert _run("contract", "approve", "--party", party, "--out", str(path),
                    "--workdir", wd) == 0  # fmt: skip
        approvals[party] = path
    record = json.loads(approvals["hospital_b"].read_text())
    assert set(record) == {"contract_hash", "party", "signature"}
    # a tampered approval is refused before anything is stored
    forged = dict(record, party="hospital_a")
    (workdir / "forged.json").write_text(json.dumps(forged))
    assert _run("contract", "add-signature", "--approval", str(workdir / "forged.json"),
                "--workdir", wd) == EXIT[SignatureInvalid]  # fmt: skip
    for path in approvals.values():
        assert _run("contract", "add-signature", "--approval", str(path), "--workdir", wd) == 0
    assert "in force" in capsys.readouterr().out
    assert _run("contract", "verify", "--workdir", wd) == 0
