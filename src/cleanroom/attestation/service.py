"""The verifier service: nonces, appraisal, EAR tokens, JWKS. A FastAPI app, no globals.

Endpoints::

    POST /challenge                 -> {"nonce": "<base64url, 32 bytes>", "expires-in": <s>}
    POST /attest   {"evidence": {"tee", "raw", "aux"},                      (Evidence.to_json)
                    "runtime-data": {"nonce", "tee-pubkey": <public JWK>},
                    "endorsements": {"dcap-collateral": <JSON text>,        (optional, SGX/TDX)
                                     "amd-cert-chain": <PEM text>}}         (optional, SNP VLEK)
                                    -> {"token": "<EAR JWT, ES256>"}

Endorsements are checked by the hardware verifiers against the pinned Intel and AMD roots,
so the attester may carry them (as Trustee's evidence does).
    GET  /.well-known/jwks.json     -> {"keys": [<public JWK>]}

Errors are RFC 7807 problem objects: 400 ``EvidenceError`` (malformed or bad signature),
403 ``PolicyDeny`` with ``rule`` (a policy rule failed, including an unknown or reused
nonce), 413 for bodies over 1 MiB.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from joserfc.jwk import ECKey

from cleanroom.attestation.ear import MAX_LIFETIME, issue_ear_token
from cleanroom.attestation.nonces import NonceStore
from cleanroom.attestation.policy import AttestationPolicy, policy_id
from cleanroom.attestation.verify import verify
from cleanroom.errors import ConfigurationError, EvidenceError, PolicyViolation
from cleanroom.tee._base import Evidence

MAX_BODY = 1024 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class VerifierSettings:
    """Configuration of one verifier: who it is, what it accepts, whom it trusts.

    ``trusted_roots`` are the roots for simulated evidence (the simulation root CA); real
    hardware roots belong to the hardware verifiers.
    """

    issuer: str
    policy: AttestationPolicy
    trusted_roots: Sequence[x509.Certificate] = field(default_factory=tuple)
    token_lifetime: dt.timedelta = dt.timedelta(minutes=5)
    nonce_ttl: dt.timedelta = dt.timedelta(minutes=5)

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise ConfigurationError("issuer must be a non-empty string")
        if not isinstance(self.policy, AttestationPolicy):
            raise ConfigurationError("policy must be an AttestationPolicy")
        if not dt.timedelta(0) < self.token_lifetime <= MAX_LIFETIME:
            raise ConfigurationError("token_lifetime must be positive and at most 10 minutes")
        object.__setattr__(self, "trusted_roots", tuple(self.trusted_roots))


def new_signing_key() -> ECKey:
    """A fresh P-256 token-signing key with a thumbprint ``kid``."""
    key = ECKey.generate_key("P-256", private=True)
    key.ensure_kid()
    return key


def _problem(status: int, kind: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": kind, "title": kind, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _endorsements(value: Any) -> tuple[str | None, bytes | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict) or set(value) - {"dcap-collateral", "amd-cert-chain"}:
        raise EvidenceError("endorsements may hold only 'dcap-collateral' and 'amd-cert-chain'")
    collateral, chain = value.get("dcap-collateral"), value.get("amd-cert-chain")
    if not isinstance(collateral, str | None) or not isinstance(chain, str | None):
        raise EvidenceError("endorsements must be text")
    return collateral, None if chain is None else chain.encode()


def create_app(
    settings: VerifierSettings,
    *,
    signing_key: ECKey | None = None,
    nonces: NonceStore | None = None,
) -> FastAPI:
    """The verifier app. ``signing_key`` (ES256, P-256) defaults to a fresh key per app."""
    key = signing_key or new_signing_key()
    if key.curve_name != "P-256" or not key.is_private:
        raise ConfigurationError("the token signing key must be a private P-256 key")
    key.ensure_kid()
    store = nonces or NonceStore(ttl=settings.nonce_ttl)
    appraisal_policy_id = policy_id(settings.policy)
    public_jwks = {"keys": [key.as_dict(private=False)]}
    app = FastAPI(title="cleanroom verifier", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/challenge")
    def challenge() -> dict[str, Any]:
        return {"nonce": store.issue(), "expires-in": int(store.ttl.total_seconds())}

    @app.get("/.well-known/jwks.json")
    def jwks() -> dict[str, Any]:
        return public_jwks

    @app.post("/attest")
    async def attest(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_BODY:
            return _problem(413, "PayloadTooLarge", "request body over 1 MiB")
        try:
            document = json.loads(body)
            if not isinstance(document, dict):
                raise EvidenceError("the request must be a JSON object")
            runtime_data = document.get("runtime-data")
            if not isinstance(runtime_data, dict) or not isinstance(runtime_data.get("nonce"), str):
                raise EvidenceError("runtime-data with a nonce is required")
            evidence = Evidence.from_json(document.get("evidence"))
            collateral, amd_chain = _endorsements(document.get("endorsements"))
            nonce = runtime_data["nonce"]
            store.consume(nonce)
            claims = verify(
                evidence,
                settings.policy,
                nonce=nonce,
                runtime_data=runtime_data,
                trusted_roots=settings.trusted_roots,
                collateral=collateral,
                amd_cert_chain=amd_chain,
            )
        except PolicyViolation as violation:
            return _problem(403, "PolicyDeny", str(violation), rule=violation.rule)
        except (EvidenceError, ValueError) as error:
            message = str(error) if isinstance(error, EvidenceError) else "malformed JSON"
            return _problem(400, "EvidenceError", message)
        token = issue_ear_token(
            claims,
            key=key,
            issuer=settings.issuer,
            policy_id=appraisal_policy_id,
            lifetime=settings.token_lifetime,
        )
        return JSONResponse({"token": token})

    return app
