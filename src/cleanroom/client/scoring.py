"""The party's scoring client: attest the enclave first, then send signed records.

:class:`ScoringClient` fetches the enclave's RA-TLS certificate and verifies its evidence
against the contract's reference measurements, TEE types, minimum SVN and the contract
hash as config id (:func:`scoring_policy`) *before* any record leaves the process; then it
pins that certificate and signs every request with the party's contract signing key
(:mod:`cleanroom.enclave.scoring_auth`). A wrong measurement raises
:class:`~cleanroom.errors.PolicyViolation` and nothing is sent.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
from cryptography import x509

from cleanroom.attestation import AttestationPolicy, VerifiedClaims
from cleanroom.attestation.ratls import attested_httpx_client_with_claims
from cleanroom.contract.keys import SigningKey
from cleanroom.contract.model import Contract
from cleanroom.enclave.scoring_auth import sign_request
from cleanroom.errors import ConfigurationError, ScoringError

_log = logging.getLogger(__name__)

#: Records per ``/score/batch`` call unless configured otherwise (the server's default cap).
DEFAULT_BATCH_SIZE = 1000


def scoring_policy(
    contract: Contract,
    *,
    insecure_simulation: bool = False,
    max_evidence_age: dt.timedelta | None = dt.timedelta(days=1),
) -> AttestationPolicy:
    """The appraisal policy a scoring caller applies to the enclave, from the contract.

    The contract's TEE types, reference measurements and minimum SVN; the contract hash as
    the required config id. Simulated evidence is accepted only if the contract allows it
    *and* ``insecure_simulation`` is true. ``max_evidence_age`` defaults to one day (the
    RA-TLS certificate is made when the server starts, and is valid for a day).
    """
    tees = frozenset(t for t in contract.enclave.tee_types if t != "simulated")
    simulation = bool(contract.enclave.allow_simulation and insecure_simulation)
    if insecure_simulation and not contract.enclave.allow_simulation:
        raise ConfigurationError("the contract does not allow the simulated TEE")
    return AttestationPolicy(
        allowed_tees=tees,
        allowed_measurements=frozenset(contract.enclave.reference_measurements),
        required_config_id=contract.hash,
        min_svn=contract.enclave.min_svn,
        allow_simulation=simulation,
        max_evidence_age=max_evidence_age,
    )


def _problem(reply: httpx.Response) -> ScoringError:
    try:
        body = reply.json()
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body, dict) else None
    message = f"scoring refused ({reply.status_code}): {detail or reply.reason_phrase}"
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}"
            for e in errors[:5]
            if isinstance(e, dict)
        )
        message += f" — {fields}"
    return ScoringError(message)


class ScoringClient:
    """Scores records with the model in an attested enclave, as a contract party.

    ``url`` is the enclave's ``https://`` address; ``contract`` gives the attestation
    policy (:func:`scoring_policy`, or pass ``policy=``) and the hash requests are bound
    to; ``party``/``signing_key`` are the caller's contract identity. ``trusted_roots``
    are the platform roots (the simulation root CA for the simulated TEE).
    ``expected_model_id`` (e.g. from a training receipt) refuses any other model.

    The enclave is attested on first use (or :meth:`connect`); nothing is sent before.

    Example::

        with ScoringClient("https://10.0.0.5:8443", contract=contract, party="hospital_a",
                           signing_key=SigningKey.load("signing-key.pem")) as client:
            client.score({"age": 63, "sex": 1, "smoker": False, "chestPain": 4, ...})
    """

    def __init__(
        self,
        url: str,
        *,
        contract: Contract,
        party: str,
        signing_key: SigningKey,
        policy: AttestationPolicy | None = None,
        trusted_roots: Sequence[x509.Certificate] = (),
        insecure_simulation: bool = False,
        expected_model_id: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout: float = 30.0,
    ) -> None:
        if not url.startswith("https://"):
            raise ConfigurationError("the scoring URL must be https:// (attested TLS)")
        key = contract.party(party).verifying_key
        if key != signing_key.public_key:
            raise ConfigurationError(f"the signing key is not {party}'s key in the contract")
        if not 1 <= batch_size <= 100_000:
            raise ConfigurationError("batch_size must be between 1 and 100000")
        if policy is None:
            policy = scoring_policy(contract, insecure_simulation=insecure_simulation)
        elif insecure_simulation:
            raise ConfigurationError("pass insecure_simulation or policy, not both")
        self._url = url.rstrip("/")
        self._contract_hash = contract.hash
        self._party = party
        self._key = signing_key
        self._policy = policy
        self._roots = tuple(trusted_roots)
        self._expected_model_id = expected_model_id
        self._batch_size = batch_size
        self._timeout = timeout
        self._http: httpx.Client | None = None
        self._claims: VerifiedClaims | None = None

    def __repr__(self) -> str:
        return f"ScoringClient({self._url!r}, party={self._party!r})"

    def connect(self) -> VerifiedClaims:
        """Fetch and verify the enclave's attested certificate (idempotent); its claims.

        Raises :class:`~cleanroom.errors.AttestationError` (e.g. ``PolicyViolation`` for a
        measurement the contract does not list) — before any request is sent.
        """
        if self._http is None or self._claims is None:
            self._http, self._claims = attested_httpx_client_with_claims(
                self._url, self._policy, trusted_roots=self._roots, timeout=self._timeout
            )
            if self._expected_model_id is not None:
                served = self.model()["modelId"]
                if served != self._expected_model_id:
                    self.close()
                    raise ScoringError("the enclave serves another model than the expected one")
        return self._claims

    @property
    def claims(self) -> VerifiedClaims | None:
        """What the enclave's attestation proved (``None`` before :meth:`connect`)."""
        return self._claims

    def _send(self, method: str, path: str, payload: Any = None) -> Any:
        self.connect()
        assert self._http is not None
        body = b"" if payload is None else json.dumps(payload, allow_nan=False).encode()
        headers = sign_request(
            self._key,
            contract_hash=self._contract_hash,
            party=self._party,
            method=method,
            path=path,
            body=body,
        )
        if body:
            headers["Content-Type"] = "application/json"
        try:
            reply = self._http.request(method, path, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise ScoringError(f"the scoring request failed ({type(error).__name__})") from None
        if not reply.is_success:
            raise _problem(reply)
        return reply.json()

    def score(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Score one record: ``{"score", "accuracy", "predictedClass", "probabilities",
        "modelId"}``. :class:`ScoringError` if refused (401/403/413/422/429)."""
        result: dict[str, Any] = self._send("POST", "/score", dict(record))
        return result

    def score_batch(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Score many records (in calls of ``batch_size``); one result per record, in order."""
        results: list[dict[str, Any]] = []
        for start in range(0, len(records), self._batch_size):
            chunk = [dict(r) for r in records[start : start + self._batch_size]]
            results.extend(self._send("POST", "/score/batch", {"records": chunk})["results"])
        return results

    def model(self) -> dict[str, Any]:
        """The served model: id, algorithm, classes, metrics, receipt, contract hash."""
        result: dict[str, Any] = self._send("GET", "/model")
        return result

    def close(self) -> None:
        """Close the connection (a later call attests the enclave again)."""
        if self._http is not None:
            self._http.close()
        self._http, self._claims = None, None

    def __enter__(self) -> ScoringClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["DEFAULT_BATCH_SIZE", "ScoringClient", "scoring_policy"]
