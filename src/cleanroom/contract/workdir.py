"""Party key files in a work directory, and drafting a contract from them.

Layout (every private key file mode 0600, never overwritten)::

    <workdir>/parties/<party>/signing-key.pem        Ed25519 or P-256 private key (PKCS#8)
    <workdir>/parties/<party>/signing-key.pub.pem    its public key (goes into the contract)
    <workdir>/parties/<party>/recipient-key.pem      P-256 private key that opens sealed outputs
    <workdir>/parties/<party>/recipient-key.pub.pem  its public key (goes into the contract)
    <workdir>/parties/<party>/broker-key.pem         P-256 key the party's broker signs with
    <workdir>/parties/<party>/broker-key.pub.pem     its public key (pinned in the contract)
    <workdir>/contract.json                          the drafted contract
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from cleanroom.contract.keys import SignatureAlgorithm, SigningKey, VerifyingKey
from cleanroom.contract.model import Contract
from cleanroom.errors import ConfigurationError

SIGNING_KEY = "signing-key.pem"
SIGNING_PUB = "signing-key.pub.pem"
RECIPIENT_KEY = "recipient-key.pem"
RECIPIENT_PUB = "recipient-key.pub.pem"
BROKER_KEY = "broker-key.pem"
BROKER_PUB = "broker-key.pub.pem"
CONTRACT_FILE = "contract.json"


def party_dir(workdir: str | os.PathLike[str], party: str) -> Path:
    """``<workdir>/parties/<party>``."""
    if not party or "/" in party or party in (".", ".."):
        raise ConfigurationError("a party name cannot be a path")
    return Path(workdir) / "parties" / party


def contract_path(workdir: str | os.PathLike[str]) -> Path:
    """``<workdir>/contract.json``."""
    return Path(workdir) / CONTRACT_FILE


@dataclass(frozen=True, slots=True)
class PartyKeyFiles:
    """Where a party's key files are."""

    directory: Path

    @property
    def signing_key(self) -> Path:
        """The private signing key file."""
        return self.directory / SIGNING_KEY

    @property
    def signing_public_key(self) -> Path:
        """The public signing key file."""
        return self.directory / SIGNING_PUB

    @property
    def recipient_key(self) -> Path:
        """The private recipient (sealed outputs) key file."""
        return self.directory / RECIPIENT_KEY

    @property
    def recipient_public_key(self) -> Path:
        """The public recipient key file."""
        return self.directory / RECIPIENT_PUB

    @property
    def broker_key(self) -> Path:
        """The private key the party's broker signs tokens and release receipts with."""
        return self.directory / BROKER_KEY

    @property
    def broker_public_key(self) -> Path:
        """The broker's public key file (pinned in the contract)."""
        return self.directory / BROKER_PUB


def generate_party_keys(
    workdir: str | os.PathLike[str], party: str, *, algorithm: SignatureAlgorithm = "ed25519"
) -> PartyKeyFiles:
    """Create a party's signing, recipient and broker key pairs (refuses to overwrite)."""
    files = PartyKeyFiles(party_dir(workdir, party))
    if files.signing_key.exists() or files.recipient_key.exists():
        raise ConfigurationError(f"party {party!r} already has keys in {files.directory}")
    files.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    signing = SigningKey.generate(algorithm)
    signing.save(files.signing_key)
    files.signing_public_key.write_text(signing.public_key.to_pem())
    _write_p256(files.recipient_key, files.recipient_public_key)
    _write_p256(files.broker_key, files.broker_public_key)
    return files


def _write_p256(private_path: Path, public_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(
        private_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def load_broker_key(workdir: str | os.PathLike[str], party: str) -> ECKey | None:
    """The party's broker signing key, or ``None`` if the party has none (older work dirs)."""
    path = PartyKeyFiles(party_dir(workdir, party)).broker_key
    if not path.is_file():
        return None
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        raise ConfigurationError(f"cannot read the broker key {str(path)!r}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigurationError(f"the broker key {str(path)!r} is not an EC P-256 key")
    return ECKey.import_key(key)


def _write_private(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise ConfigurationError(f"refusing to overwrite the key file {str(path)!r}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def discover_parties(workdir: str | os.PathLike[str]) -> list[str]:
    """Parties that have a public signing key in ``<workdir>/parties``, sorted."""
    root = Path(workdir) / "parties"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / SIGNING_PUB).is_file())


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        raise ConfigurationError(f"cannot read {what} {str(path)!r}") from None


def draft_contract(
    workdir: str | os.PathLike[str],
    *,
    parties: Sequence[str],
    brokers: Mapping[str, str],
    contract_id: str,
    title: str,
    algorithm: Mapping[str, Any],
    enclave: Mapping[str, Any],
    dataset: tuple[str, str, int],
    valid_days: int = 90,
    now: dt.datetime | None = None,
) -> Contract:
    """A contract for ``parties`` from their public key files (every party contributes
    ``dataset = (table, schema, min_rows)``, receives the model, every metric and the
    collaboration report, and may score 1,000 times a day)."""
    if not parties:
        raise ConfigurationError("a contract needs at least one party (create keys first)")
    if valid_days < 1:
        raise ConfigurationError("the contract must be valid for at least one day")
    created = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    entries = []
    for name in parties:
        files = PartyKeyFiles(party_dir(workdir, name))
        signing = VerifyingKey.from_pem(_read(files.signing_public_key, "the public key"))
        url = brokers.get(name)
        if url is None:
            raise ConfigurationError(f"no broker URL for party {name!r}")
        entry = {
            "name": name,
            "signing_key": signing.to_pem(),
            "broker_url": url,
            "recipient_key": _read(files.recipient_public_key, "the recipient key"),
        }
        if files.broker_public_key.is_file():
            entry["broker_key"] = _read(files.broker_public_key, "the broker key")
        entries.append(entry)
    table, schema, min_rows = dataset
    metrics = list(algorithm["metrics"])
    document = {
        "id": contract_id,
        "title": title,
        "version": 1,
        "created": created.isoformat(),
        "expires": (created + dt.timedelta(days=valid_days)).isoformat(),
        "parties": entries,
        "datasets": [
            {"party": n, "table": table, "schema": schema, "min_rows": min_rows} for n in parties
        ],
        "algorithm": dict(algorithm),
        "enclave": dict(enclave),
        "outputs": {
            "model_recipients": list(parties),
            "metrics": [{"party": n, "metrics": metrics} for n in parties],
            "collaboration_report": list(parties),
        },
        "scoring": {
            "callers": [{"party": n, "quota_per_day": 1000} for n in parties],
            "probability_decimals": 2,
        },
    }
    return Contract.from_mapping(document)


__all__ = [
    "CONTRACT_FILE",
    "PartyKeyFiles",
    "contract_path",
    "discover_parties",
    "draft_contract",
    "generate_party_keys",
    "load_broker_key",
    "party_dir",
]
