"""``cleanroom ledger verify / export / list`` through the real command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cleanroom.cli import main
from cleanroom.contract import SigningKey
from cleanroom.errors import EXIT_CODES, ConfigurationError, LedgerError
from cleanroom.ledger import Ledger
from cleanroom.store import default_url, open_store

EXIT = dict(EXIT_CODES)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, SigningKey, Ledger]:
    key = SigningKey.generate("p256")
    with open_store(default_url(tmp_path)) as store:
        ledger = Ledger.create(store, key, ledger_id="job-1")
        ledger.append("attestation.accepted", {"simulated": True})
        ledger.append("job.trained", {"rows": {"a": 10, "b": 12}})
    (tmp_path / "enclave.pub.pem").write_text(key.public_key.to_pem())
    (tmp_path / "enclave.jwk").write_text(json.dumps(key.public_key.to_jwk()))
    return tmp_path, key, ledger


def test_export_and_verify(
    setup: tuple[Path, SigningKey, Ledger], capsys: pytest.CaptureFixture[str]
) -> None:
    wd, _key, _ = setup
    out = wd / "ledger.jsonl"
    assert main(["ledger", "list", "--workdir", str(wd)]) == 0
    assert capsys.readouterr().out.split() == ["job-1"]
    assert main(["ledger", "export", "--ledger-id", "job-1", "--out", str(out),
                 "--workdir", str(wd)]) == 0  # fmt: skip
    for pub in ("enclave.pub.pem", "enclave.jwk"):
        assert main(["ledger", "verify", str(out), "--public-key", str(wd / pub)]) == 0
    captured = capsys.readouterr()
    assert "3 entries verify" in captured.out
    assert "no signed head" in captured.out
    assert "seq 1: a simulated TEE was accepted" in captured.err
    assert main(["ledger", "verify", "--ledger-id", "job-1", "--workdir", str(wd),
                 "--public-key", str(wd / "enclave.jwk")]) == 0  # fmt: skip


def test_verify_failures_exit_80_naming_the_seq(
    setup: tuple[Path, SigningKey, Ledger], capsys: pytest.CaptureFixture[str]
) -> None:
    wd, key, _ = setup
    with open_store(default_url(wd)) as store:
        ledger = Ledger.open(store, "job-1", key)
        head = ledger.head()
        lines = [json.dumps(e.to_json()) for e in ledger.entries()]
    head_file = wd / "head.json"
    head_file.write_text(json.dumps(head.to_json()))
    pub = str(wd / "enclave.pub.pem")
    full = wd / "full.jsonl"
    full.write_text("\n".join(lines) + "\n")
    assert main(["ledger", "verify", str(full), "--public-key", pub, "--head", str(head_file)]) == 0
    assert "signed head checked" in capsys.readouterr().out

    cut = wd / "cut.jsonl"
    cut.write_text("\n".join(lines[:2]) + "\n")
    code = main(["ledger", "verify", str(cut), "--public-key", pub, "--head", str(head_file)])
    assert code == EXIT[LedgerError]
    assert "seq 2: missing" in capsys.readouterr().err

    record = json.loads(lines[2])
    record["payload"]["rows"]["a"] = 11
    del record["hash"]
    edited = wd / "edited.jsonl"
    edited.write_text("\n".join([*lines[:2], json.dumps(record)]) + "\n")
    assert main(["ledger", "verify", str(edited), "--public-key", pub]) == EXIT[LedgerError]
    assert "seq 2: the signature does not verify" in capsys.readouterr().err

    other = wd / "other.pem"
    other.write_text(SigningKey.generate().public_key.to_pem())
    assert main(["ledger", "verify", str(full), "--public-key", str(other)]) == EXIT[LedgerError]
    assert "seq 0" in capsys.readouterr().err


def test_usage_errors(setup: tuple[Path, SigningKey, Ledger]) -> None:
    wd, _, _ = setup
    pub = str(wd / "enclave.pub.pem")
    assert main(["ledger", "verify", "--public-key", pub]) == EXIT[ConfigurationError]
    assert (
        main(["ledger", "verify", "--public-key", str(wd / "nope.pem"), "x"])
        == EXIT[ConfigurationError]
    )
    assert main(["ledger", "verify", "--ledger-id", "nope", "--public-key", pub,
                 "--workdir", str(wd)]) == EXIT[LedgerError]  # fmt: skip
