"""The collaboration contract document: its fields, its validation and its identity.

A contract is a JSON object validated by the pydantic models below (``extra="forbid"``
everywhere: an unknown field is an error, never ignored). ``docs/contract.schema.json`` is
generated from them by :func:`contract_json_schema`.

Identity: :func:`contract_hash` is the SHA-256 (lowercase hex) of the RFC 8785 canonical
JSON of the *normalized* document — the validated model dumped in JSON mode, defaults
filled in, ``null`` members dropped (so an absent optional member and a ``null`` one hash
alike), timestamps in UTC as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``. Parsing the normalized
document again gives the same hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

import rfc8785
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from cleanroom.contract.keys import VerifyingKey, b64url_decode
from cleanroom.errors import ContractError

#: Algorithms a contract may name.
ALGORITHMS: tuple[str, ...] = ("multinomial_logistic_regression", "gradient_boosted_trees")
#: Metric names (ML.NET's multiclass evaluator set).
METRICS: tuple[str, ...] = (
    "micro_accuracy",
    "macro_accuracy",
    "log_loss",
    "log_loss_reduction",
    "top_k_accuracy",
    "per_class_log_loss",
    "confusion_matrix",
)
#: TEE types a contract may accept (the names of :mod:`cleanroom.tee`).
TEE_TYPES: tuple[str, ...] = ("simulated", "sev-snp", "tdx", "sgx")

_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,47}$"
_MAX_SAFE_INT = 2**53 - 1
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_URL = re.compile(r"^(https?)://([^/?#@\s]+)(/[^\s]*)?$")

AlgorithmName = Literal["multinomial_logistic_regression", "gradient_boosted_trees"]
MetricName = Literal[
    "micro_accuracy",
    "macro_accuracy",
    "log_loss",
    "log_loss_reduction",
    "top_k_accuracy",
    "per_class_log_loss",
    "confusion_matrix",
]
TeeType = Literal["simulated", "sev-snp", "tdx", "sgx"]
Identifier = Annotated[str, Field(pattern=_IDENT)]


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


def _format_utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


UtcDatetime = Annotated[
    AwareDatetime,
    AfterValidator(_utc),
    PlainSerializer(_format_utc, return_type=str, when_used="json"),
]


_Seq = TypeVar("_Seq", bound=Sequence[Any])


def _unique(values: _Seq, what: str) -> _Seq:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must not repeat")
    return values


class _Strict(BaseModel):
    # Strict: "allow_simulation": "yes" or "version": "1" are errors, not coercions.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Jwk(_Strict):
    """A public JSON Web Key (RFC 7517). Private members (``d``) are refused."""

    kty: Literal["OKP", "EC"]
    crv: Literal["Ed25519", "P-256", "P-384", "X25519"]
    x: str
    y: str | None = None
    kid: str | None = Field(default=None, max_length=200)
    alg: str | None = Field(default=None, max_length=20)
    use: Literal["sig", "enc"] | None = None

    def as_dict(self) -> dict[str, str]:
        """The JWK as a plain mapping (absent members left out)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


PublicKeySpec = Annotated[str, Field(min_length=1, max_length=4000)] | Jwk


def _check_signing_key(spec: str | Jwk) -> str | Jwk:
    VerifyingKey.parse(spec if isinstance(spec, str) else spec.as_dict())
    return spec


def _check_broker_key(spec: str | Jwk | None) -> str | Jwk | None:
    if spec is None:
        return None
    if isinstance(spec, str) and "PRIVATE KEY" in spec:
        raise ValueError("expected a public key, got a private key (never share it)")
    if VerifyingKey.parse(spec if isinstance(spec, str) else spec.as_dict()).algorithm != "p256":
        raise ValueError("a broker key is an EC P-256 key (its receipts are ES256 JWTs)")
    return spec


def _check_recipient_key(spec: str | Jwk) -> str | Jwk:
    if isinstance(spec, str):
        if "PRIVATE KEY" in spec:
            raise ValueError("expected a public key, got a private key (never share it)")
        try:
            key = serialization.load_pem_public_key(spec.encode("ascii", "replace"))
        except (ValueError, UnsupportedAlgorithm):
            raise ValueError("the recipient public key PEM does not parse") from None
        ok = isinstance(key, x25519.X25519PublicKey) or (
            isinstance(key, ec.EllipticCurvePublicKey)
            and isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1)
        )
        if not ok:
            raise ValueError("recipient keys must be EC P-256, EC P-384 or X25519")
        return spec
    try:
        x = b64url_decode(spec.x)
        if spec.kty == "OKP" and spec.crv == "X25519":
            x25519.X25519PublicKey.from_public_bytes(x)
            return spec
        if spec.kty == "EC" and spec.crv in ("P-256", "P-384") and spec.y is not None:
            curve: ec.EllipticCurve = ec.SECP256R1() if spec.crv == "P-256" else ec.SECP384R1()
            y = b64url_decode(spec.y)
            size = (curve.key_size + 7) // 8
            if len(x) != size or len(y) != size:
                raise ValueError("coordinate length")
            ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
            ).public_key()
            return spec
    except ValueError:
        raise ValueError("the recipient JWK is malformed or not on its curve") from None
    raise ValueError("recipient JWKs must be EC P-256, EC P-384 or OKP X25519")


def _check_url(url: str) -> str:
    match = _URL.match(url)
    if match is None:
        raise ValueError("the broker URL must be an absolute http(s) URL")
    scheme, host = match.group(1), match.group(2)
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    if scheme == "http" and hostname.lower() not in _LOOPBACK_HOSTS:
        raise ValueError("the broker URL must use https (plain http only on loopback)")
    return url


class Party(_Strict):
    """A data owner (or recipient) that must sign the contract."""

    name: Identifier = Field(description="Party name, as used in the store (identifier).")
    signing_key: Annotated[PublicKeySpec, AfterValidator(_check_signing_key)] = Field(
        description="Public key that signs approvals and revocations: Ed25519 or ECDSA "
        "P-256, as a SubjectPublicKeyInfo PEM or a public JWK."
    )
    broker_url: Annotated[str, AfterValidator(_check_url)] = Field(
        description="The party's key broker (KBS) base URL; https, or http on loopback."
    )
    recipient_key: Annotated[PublicKeySpec, AfterValidator(_check_recipient_key)] = Field(
        description="Public key outputs are sealed to (JWE ECDH-ES): EC P-256/P-384 or "
        "X25519, as PEM or JWK."
    )

    broker_key: Annotated[PublicKeySpec | None, AfterValidator(_check_broker_key)] = Field(
        default=None,
        description="Public EC P-256 key of the party's broker (PEM or JWK). When given, the "
        "enclave accepts the broker's release receipts only under this key, and anyone can "
        "check the receipts in the ledger offline; when absent, the receipts are checked "
        "against the key set the broker serves over the (TLS) connection.",
    )

    @property
    def verifying_key(self) -> VerifyingKey:
        """The parsed :attr:`signing_key`."""
        spec = self.signing_key
        return VerifyingKey.parse(spec if isinstance(spec, str) else spec.as_dict())

    @property
    def broker_jwks(self) -> dict[str, Any] | None:
        """The pinned :attr:`broker_key` as a JWK set, or ``None`` if the contract pins none."""
        spec = self.broker_key
        if spec is None:
            return None
        return {
            "keys": [VerifyingKey.parse(spec if isinstance(spec, str) else spec.as_dict()).to_jwk()]
        }


class Dataset(_Strict):
    """One party's table that the job reads."""

    party: Identifier
    table: Identifier = Field(description="The dataset (table) name in the store.")
    schema_name: Identifier = Field(
        alias="schema", description="The dataset schema the table follows, e.g. medical_record."
    )
    min_rows: int = Field(
        ge=1, le=10**12, description="The job stops if this party has fewer rows."
    )

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True
    )


class Split(_Strict):
    """The seeded, disjoint, stratified train/test split of every party's rows."""

    train_fraction: float = Field(gt=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


HyperValue = Annotated[str, Field(max_length=200)] | int | float | bool


class Algorithm(_Strict):
    """What the enclave trains and how it evaluates."""

    name: AlgorithmName
    features: tuple[Identifier, ...] = Field(min_length=1)
    label: Identifier
    hyperparameters: dict[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,63}$")], HyperValue] = (
        Field(default_factory=dict)
    )
    split: Split
    metrics: tuple[MetricName, ...] = Field(min_length=1)

    @field_validator("hyperparameters")
    @classmethod
    def _portable_numbers(cls, value: dict[str, Any]) -> dict[str, Any]:
        for item in value.values():
            if isinstance(item, bool):
                continue
            if isinstance(item, int) and abs(item) > _MAX_SAFE_INT:
                raise ValueError("integers must stay within ±(2**53 - 1)")
            # RFC 8785 prints an integral double below 1e21 without an exponent, which a
            # JSON parser reads back as an integer: keep those within the safe range.
            if isinstance(item, float) and (
                not math.isfinite(item) or (item.is_integer() and _MAX_SAFE_INT < abs(item) < 1e21)
            ):
                raise ValueError("numbers must be finite; integral ones within ±(2**53 - 1)")
        return value

    @field_validator("features")
    @classmethod
    def _features_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _unique(value, "features")

    @field_validator("metrics")
    @classmethod
    def _metrics_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _unique(value, "metrics")

    @model_validator(mode="after")
    def _label_not_a_feature(self) -> Algorithm:
        if self.label in self.features:
            raise ValueError("the label must not also be a feature")
        return self


class Enclave(_Strict):
    """The code everyone approved and where it may run."""

    tee_types: tuple[TeeType, ...] = Field(min_length=1)
    reference_measurements: tuple[
        Annotated[str, Field(pattern=r"^(?:[0-9a-f]{64}|[0-9a-f]{96}|[0-9a-f]{128})$")], ...
    ] = Field(min_length=1, description="Lowercase hex measurements of the approved enclave.")
    min_svn: int = Field(default=0, ge=0, le=2**32 - 1)
    allow_simulation: bool = Field(
        default=False,
        description="Accept the simulated (debug, insecure) TEE. Must be true exactly when "
        "tee_types contains 'simulated'.",
    )

    @field_validator("tee_types", "reference_measurements")
    @classmethod
    def _no_repeats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _unique(value, "the list")

    @model_validator(mode="after")
    def _simulation_is_explicit(self) -> Enclave:
        simulated = "simulated" in self.tee_types
        if simulated and not self.allow_simulation:
            raise ValueError("tee_types lists 'simulated' but allow_simulation is not true")
        if self.allow_simulation and not simulated:
            raise ValueError("allow_simulation is true but tee_types does not list 'simulated'")
        return self


class MetricGrant(_Strict):
    """Which metrics one party receives."""

    party: Identifier
    metrics: tuple[MetricName, ...] = Field(min_length=1)


class Outputs(_Strict):
    """Who receives what. An empty ``model_recipients`` keeps the model in the enclave."""

    model_recipients: tuple[Identifier, ...] = Field(default=())
    metrics: tuple[MetricGrant, ...] = Field(default=())
    collaboration_report: tuple[Identifier, ...] = Field(
        default=(), description="Parties that receive the per-party gain report."
    )


class ScoringGrant(_Strict):
    """A party allowed to call the scoring API, and its daily quota."""

    party: Identifier
    quota_per_day: int = Field(ge=0, le=10**9)


class Scoring(_Strict):
    """The scoring API policy. No callers: no scoring."""

    callers: tuple[ScoringGrant, ...] = Field(default=())
    probability_decimals: int = Field(
        default=2, ge=0, le=6, description="Probabilities are rounded to this many decimals."
    )


class Contract(_Strict):
    """The collaboration contract. Build with :meth:`from_json` / :meth:`from_mapping`."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    version: int = Field(ge=1, le=10**9)
    created: UtcDatetime
    expires: UtcDatetime
    parties: tuple[Party, ...] = Field(min_length=1)
    datasets: tuple[Dataset, ...] = Field(min_length=1)
    algorithm: Algorithm
    enclave: Enclave
    outputs: Outputs = Field(default_factory=Outputs)
    scoring: Scoring = Field(default_factory=Scoring)

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        if self.expires <= self.created:
            raise ValueError("expires must be after created")
        names = [p.name for p in self.parties]
        _unique(names, "party names")
        _unique([p.verifying_key for p in self.parties], "party signing keys")
        known = set(names)

        def check(party: str, where: str) -> None:
            if party not in known:
                raise ValueError(f"{where} names an unknown party {party!r}")

        for ds in self.datasets:
            check(ds.party, "datasets")
        _unique([(d.party, d.table) for d in self.datasets], "(party, table) pairs")
        for name in self.outputs.model_recipients:
            check(name, "outputs.model_recipients")
        _unique(self.outputs.model_recipients, "outputs.model_recipients")
        for grant in self.outputs.metrics:
            check(grant.party, "outputs.metrics")
            _unique(grant.metrics, "outputs.metrics[].metrics")
            if not set(grant.metrics) <= set(self.algorithm.metrics):
                raise ValueError("outputs.metrics grants a metric the algorithm does not compute")
        _unique([g.party for g in self.outputs.metrics], "outputs.metrics parties")
        for name in self.outputs.collaboration_report:
            check(name, "outputs.collaboration_report")
        _unique(self.outputs.collaboration_report, "outputs.collaboration_report")
        for caller in self.scoring.callers:
            check(caller.party, "scoring.callers")
        _unique([c.party for c in self.scoring.callers], "scoring.callers parties")
        return self

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, document: Mapping[str, Any]) -> Contract:
        """Validate a parsed JSON object; raises :class:`ContractError` listing every problem."""
        try:
            # Validated as JSON text: strict mode still reads RFC 3339 strings as times.
            text = json.dumps(dict(document), allow_nan=False)
        except (TypeError, ValueError):
            raise ContractError("the contract is not JSON data (or holds NaN/Infinity)") from None
        try:
            return cls.model_validate_json(text)
        except ValidationError as error:
            raise ContractError(_describe(error)) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Contract:
        """Parse and validate a JSON document."""
        try:
            document = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ContractError(
                f"the contract is not valid JSON ({type(error).__name__})"
            ) from None
        if not isinstance(document, dict):
            raise ContractError("the contract must be a JSON object")
        return cls.from_mapping(document)

    # -- identity -----------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The normalized JSON object (what gets hashed)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def canonical_bytes(self) -> bytes:
        """RFC 8785 canonical JSON of :meth:`document`."""
        try:
            return rfc8785.dumps(self.document())
        except rfc8785.CanonicalizationError:
            raise ContractError("the contract holds a number RFC 8785 cannot represent") from None

    @property
    def hash(self) -> str:
        """:func:`contract_hash` of this contract."""
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    def to_json(self, *, indent: int | None = 2) -> str:
        """The normalized document as (pretty) JSON text."""
        return json.dumps(self.document(), indent=indent, ensure_ascii=False) + "\n"

    def party(self, name: str) -> Party:
        """The party called ``name``; :class:`ContractError` if the contract names no such party."""
        for party in self.parties:
            if party.name == name:
                return party
        raise ContractError(f"the contract names no party {name!r}")

    @property
    def party_names(self) -> tuple[str, ...]:
        """Every party's name, in contract order."""
        return tuple(p.name for p in self.parties)

    def is_expired(self, now: dt.datetime) -> bool:
        """Whether ``now`` is at or past :attr:`expires`."""
        return now >= self.expires


def contract_hash(contract: Contract) -> str:
    """SHA-256 (lowercase hex) of the contract's RFC 8785 canonical JSON (see the module doc)."""
    return contract.hash


def contract_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a contract (committed as docs/contract.schema.json)."""
    schema = Contract.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://cleanroom.invalid/contract.schema.json",
        **schema,
    }


def _describe(error: ValidationError) -> str:
    # Only locations and messages: pydantic's default text quotes the input values.
    problems = []
    for item in error.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(part) for part in item["loc"]) or "(document)"
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    shown = "; ".join(problems[:8])
    more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
    return f"the contract does not validate: {shown}{more}"


__all__ = [
    "ALGORITHMS",
    "METRICS",
    "TEE_TYPES",
    "Algorithm",
    "Contract",
    "Dataset",
    "Enclave",
    "Jwk",
    "MetricGrant",
    "Outputs",
    "Party",
    "Scoring",
    "ScoringGrant",
    "Split",
    "contract_hash",
    "contract_json_schema",
]
