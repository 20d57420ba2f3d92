"""A recipient opens its sealed outputs: the bytes checked against the receipt are the
bytes opened (no second read that a swapped file could answer)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.enclave.job import OutputFile
from cleanroom.enclave.outputs import JobOutcome, open_model
from cleanroom.enclave.sealing import seal_output
from cleanroom.errors import ConfigurationError, SignatureInvalid

H = "ab" * 32


@pytest.fixture
def key(tmp_path: Path) -> tuple[str, Path]:
    private = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "recipient.pem"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public.decode(), path


def _sealed(plaintext: bytes, public: str, kind: str) -> bytes:
    envelope = seal_output(
        plaintext,
        public,
        kind=kind,
        party="hospital_a",
        contract_hash=H,
        content_type="application/json",
    )
    return json.dumps(envelope, indent=1).encode("utf-8")


def _outcome(directory: Path, name: str, data: bytes, kind: str, model: bytes) -> JobOutcome:
    (directory / name).write_bytes(data)
    listed = OutputFile(kind, "hospital_a", name, hashlib.sha256(data).hexdigest())
    receipt = {
        "body": {
            "outputs": [listed.to_dict()],
            "model": {"sha256": hashlib.sha256(model).hexdigest()},
        }
    }
    return JobOutcome(
        contract_hash=H,
        job_id="job",
        ledger_id="ledger",
        outputs_dir=directory,
        outputs=(listed,),
        receipt=receipt,
        measurement="00",
        simulated=True,
        model_id=hashlib.sha256(model).hexdigest(),
        metrics={},
        keys_released=0,
        rows={},
        events=(),
    )


def _swap_after_first_read(monkeypatch: pytest.MonkeyPatch, target: Path, other: bytes) -> None:
    """The file changes right after its first read (an operator racing the recipient)."""
    reads: list[Path] = []
    read_bytes, read_text = Path.read_bytes, Path.read_text

    def swap(path: Path) -> None:
        if path == target and not reads:
            reads.append(path)
            target.write_bytes(other)

    def reading_bytes(self: Path) -> bytes:
        data = read_bytes(self)
        swap(self)
        return data

    def reading_text(self: Path, *args: Any, **kwargs: Any) -> str:
        text = read_text(self, *args, **kwargs)
        swap(self)
        return text

    monkeypatch.setattr(Path, "read_bytes", reading_bytes)
    monkeypatch.setattr(Path, "read_text", reading_text)


def test_open_json_opens_the_bytes_it_checked(
    tmp_path: Path, key: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    public, private = key
    genuine = _sealed(b'{"auc": 0.9}', public, "metrics")
    outcome = _outcome(tmp_path, "metrics.hospital_a.jwe", genuine, "metrics", b"onnx")
    assert outcome.open_json("metrics", "hospital_a", private) == {"auc": 0.9}
    forged = _sealed(b'{"auc": 1.0}', public, "metrics")
    _swap_after_first_read(monkeypatch, outcome.output("metrics", "hospital_a"), forged)
    assert outcome.open_json("metrics", "hospital_a", private) == {"auc": 0.9}
    # Read again, the swapped file is not the one the receipt lists.
    with pytest.raises(SignatureInvalid, match="not the file the receipt lists"):
        outcome.open_json("metrics", "hospital_a", private)


def test_open_model_opens_the_bytes_it_checked(
    tmp_path: Path, key: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    public, private = key
    genuine = _sealed(b"onnx", public, "model")
    outcome = _outcome(tmp_path, "model.hospital_a.jwe", genuine, "model", b"onnx")
    path = outcome.output("model", "hospital_a")
    _swap_after_first_read(monkeypatch, path, _sealed(b"other onnx", public, "model"))
    opened = open_model(path, private, outcome.receipt)
    assert opened.onnx == b"onnx"
    assert opened.model_id == hashlib.sha256(b"onnx").hexdigest()


def test_a_listed_file_that_is_no_envelope_is_named(tmp_path: Path, key: tuple[str, Path]) -> None:
    _, private = key
    outcome = _outcome(tmp_path, "metrics.hospital_a.jwe", b"\xff not json", "metrics", b"onnx")
    with pytest.raises(ConfigurationError, match="is not a sealed output file"):
        outcome.open_json("metrics", "hospital_a", private)
    metrics = _outcome(
        tmp_path, "model.hospital_a.jwe", _sealed(b"{}", key[0], "metrics"), "model", b""
    )
    with pytest.raises(ConfigurationError, match="is not a sealed model"):
        open_model(metrics.output("model", "hospital_a"), private, metrics.receipt)


def test_a_missing_output_is_one_clear_error(tmp_path: Path, key: tuple[str, Path]) -> None:
    outcome = _outcome(tmp_path, "metrics.hospital_a.jwe", b"{}", "metrics", b"onnx")
    outcome.output("metrics", "hospital_a").unlink()
    with pytest.raises(ConfigurationError, match=r"cannot read .*metrics\.hospital_a\.jwe"):
        outcome.open_json("metrics", "hospital_a", key[1])
