"""The enclave's side of the KBS protocol: attest to a party's broker, receive its key.

::

    with httpx.Client(base_url=broker_url, timeout=30) as http:
        cek = fetch_cek(http, platform=platform, party="hospital_a", cek_name="CEK_hospital_a")

:class:`KbsClient` runs ``auth → attest → resource`` once per broker session and can fetch
several resources after one attestation. It makes an ephemeral EC P-256 key, binds it
with the broker's nonce into REPORTDATA (:func:`cleanroom.attestation.report_data_for`),
and decrypts each released JWE with it. The private key lives only in this object's
memory, is never serialized, and is dropped by :meth:`KbsClient.close`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import httpx
from joserfc.jwk import KeySet

from cleanroom.attestation import report_data_for, request_ear_token, runtime_data_for
from cleanroom.crypto.keys import CEK_LENGTH, ColumnEncryptionKey
from cleanroom.errors import BrokerError, DecryptionError, PolicyViolation
from cleanroom.tee import Platform

from .jwe import new_ephemeral_key, tee_pubkey_of, unseal
from .policy import CEK_TYPE
from .receipts import verify_receipt
from .service import RECEIPT_HEADER

#: KBS protocol version this client speaks.
PROTOCOL_VERSION = "0.1.1"

_TEE_NAMES = {"simulated": "simulated", "sev-snp": "snp", "tdx": "tdx", "sgx": "sgx"}


@dataclass(frozen=True, slots=True)
class KeyRelease:
    """A key released by a broker, with the broker's signed receipt (for the ledger)."""

    resource: str
    cek: ColumnEncryptionKey = field(repr=False)
    receipt: str = field(repr=False)

    def receipt_claims(self, broker_jwks: dict[str, Any] | KeySet) -> dict[str, Any]:
        """The receipt's claims after checking its signature against the broker's key set."""
        return verify_receipt(self.receipt, broker_jwks)


def _refusal(reply: httpx.Response, step: str) -> Exception:
    try:
        problem = reply.json()
    except ValueError:
        problem = {}
    detail = str(problem.get("detail", "")) if isinstance(problem, dict) else ""
    rule = problem.get("rule") if isinstance(problem, dict) else None
    if isinstance(rule, str) and reply.status_code in (401, 403):
        return PolicyViolation(
            rule, f"the broker refused {step} (HTTP {reply.status_code}): {detail}"
        )
    return BrokerError(f"the broker refused {step} (HTTP {reply.status_code}): {detail}")


class KbsClient:
    """One KBS session with one broker, for one enclave platform.

    ``http`` is an :class:`httpx.Client` whose ``base_url`` is the broker (its cookie jar
    carries ``kbs-session-id``). With ``verifier`` (an httpx client for the party's
    verifier) the enclave presents an EAR token instead of raw evidence.
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        platform: Platform,
        verifier: httpx.Client | None = None,
    ) -> None:
        self._http = http
        self._platform = platform
        self._verifier = verifier
        self._key = new_ephemeral_key()
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"KbsClient(broker={str(self._http.base_url)!r}, attested={self._token is not None})"

    def __reduce__(self) -> Any:
        raise TypeError("a KBS client holds a private key and cannot be pickled")

    @property
    def token(self) -> str | None:
        """The broker's attestation token once :meth:`attest` succeeded."""
        return self._token

    def attest(self) -> str:
        """``/auth`` then ``/attest``; returns (and keeps) the attestation token."""
        tee = _TEE_NAMES.get(self._platform.tee, self._platform.tee)
        reply = self._http.post(
            "/kbs/v0/auth", json={"version": PROTOCOL_VERSION, "tee": tee, "extra-params": {}}
        )
        if reply.status_code != 200:
            raise _refusal(reply, "/auth")
        nonce = reply.json().get("nonce")
        if not isinstance(nonce, str):
            raise BrokerError("the broker sent no nonce")
        public = tee_pubkey_of(self._key)
        evidence: dict[str, Any]
        if self._verifier is not None:
            ear, _ = request_ear_token(self._verifier, self._platform, public)
            evidence = {"ear": ear}
        else:
            evidence = self._platform.evidence(report_data_for(nonce, public)).to_json()
        body = {"runtime-data": runtime_data_for(nonce, public), "tee-evidence": evidence}
        reply = self._http.post("/kbs/v0/attest", json=body)
        if reply.status_code != 200:
            raise _refusal(reply, "/attest")
        token = reply.json().get("token")
        if not isinstance(token, str):
            raise BrokerError("the broker sent no token")
        self._token = token
        return token

    def resource(self, repository: str, type_: str, tag: str) -> tuple[bytes, str | None]:
        """Fetch and decrypt one resource: ``(plaintext, receipt)``. Attests first if needed."""
        if self._token is None:
            self.attest()
        reply = self._http.get(f"/kbs/v0/resource/{repository}/{type_}/{tag}")
        if reply.status_code != 200:
            raise _refusal(reply, f"resource {repository}/{type_}/{tag}")
        try:
            sealed = reply.json()
        except ValueError:
            raise DecryptionError() from None
        return unseal(sealed, self._key), reply.headers.get(RECEIPT_HEADER)

    def cek(self, party: str, cek_name: str) -> KeyRelease:
        """The column encryption key ``<party>/cek/<cek_name>`` and its release receipt."""
        plaintext, receipt = self.resource(party, CEK_TYPE, cek_name)
        if len(plaintext) != CEK_LENGTH or receipt is None:
            raise BrokerError("the broker released something that is not a column key")
        return KeyRelease(f"{party}/{CEK_TYPE}/{cek_name}", ColumnEncryptionKey(plaintext), receipt)

    def close(self) -> None:
        """Forget the ephemeral key and the token (further calls make a new key)."""
        self._key = new_ephemeral_key()
        self._token = None

    def __enter__(self) -> KbsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fetch_cek(
    broker: str | httpx.Client,
    *,
    platform: Platform,
    party: str,
    cek_name: str,
    verifier: httpx.Client | None = None,
) -> ColumnEncryptionKey:
    """Attest to ``broker`` (a base URL, or an httpx client with one) and return
    ``party``'s CEK ``cek_name``.

    One fresh ephemeral key and session per call; use :class:`KbsClient` to fetch several
    keys (and keep the receipts). Raises :class:`~cleanroom.errors.PolicyViolation` naming
    the broker's rule when it refuses, :class:`BrokerError` otherwise.
    """
    http = (
        broker if isinstance(broker, httpx.Client) else httpx.Client(base_url=broker, timeout=30.0)
    )
    client = KbsClient(http, platform=platform, verifier=verifier)
    try:
        return client.cek(party, cek_name).cek
    finally:
        client.close()
        if http is not broker:
            http.close()


def _fetch_cek_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--party", required=True)
    parser.add_argument("--cek", required=True, action="append", dest="ceks")
    parser.add_argument("--verifier-url", default=None)


def _fetch_cek_run(platform: Platform, args: Any) -> int:
    from cleanroom.tee.enclave_main import emit

    verifier = (
        None
        if args.verifier_url is None
        else httpx.Client(base_url=args.verifier_url, timeout=30.0)
    )
    try:
        with (
            httpx.Client(base_url=args.broker_url, timeout=30.0) as http,
            KbsClient(http, platform=platform, verifier=verifier) as kbs,
        ):
            for name in args.ceks:
                release = kbs.cek(args.party, name)
                release.cek.zero()  # this command only proves the release; keys stay inside
                emit("key-released", resource=release.resource, receipt=release.receipt)
    finally:
        if verifier is not None:
            verifier.close()
    return 0


#: An enclave command (``cleanroom.tee.enclave_main.COMMANDS`` entry) that fetches CEKs:
#: ``fetch-cek --broker-url URL --party P --cek NAME [--cek NAME] [--verifier-url URL]``;
#: emits ``{"event": "key-released", "resource", "receipt"}`` per key, never the key.
ENCLAVE_COMMAND = (_fetch_cek_arguments, _fetch_cek_run)


__all__ = ["ENCLAVE_COMMAND", "PROTOCOL_VERSION", "KbsClient", "KeyRelease", "fetch_cek"]
