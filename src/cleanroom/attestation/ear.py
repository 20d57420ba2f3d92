"""EAR (EAT Attestation Results) as a JWT signed ES256, and its verification.

Claims (profile ``tag:github.com,2023:veraison/ear``, the dotted names Veraison and Trustee
emit)::

    {"eat_profile": "tag:github.com,2023:veraison/ear",
     "iss": <issuer>, "iat": <int>, "exp": <int, at most iat + 600>,
     "eat_nonce": <the verifier nonce>,
     "ear.verifier-id": {"developer": "cleanroom", "build": "cleanroom <version>"},
     "submods": {"cleanroom": {
         "ear.status": "affirming" | "warning" | "contraindicated",
         "ear.trustworthiness-vector": {<AR4SI claim>: <int>, ...},
         "ear.appraisal-policy-id": "cleanroom:<policy digest>",
         "ear.veraison.annotated-evidence": {<VerifiedClaims.annotated_evidence()>}}}}

``ear.status`` is the AR4SI tier of the worst trustworthiness claim; simulated evidence
always gets ``hardware: 32`` and ``runtime-opaque: 32`` and so is never ``affirming``.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

import cleanroom
from cleanroom.attestation.claims import VerifiedClaims
from cleanroom.errors import AttestationError, ConfigurationError, EvidenceError

EAR_PROFILE = "tag:github.com,2023:veraison/ear"
SUBMOD = "cleanroom"
MAX_LIFETIME = dt.timedelta(minutes=10)
_ALGORITHMS = ["ES256"]
_BUILD = f"cleanroom {cleanroom.__version__}"

# AR4SI values used here (draft-ietf-rats-ar4si): 2 = affirming, 32 = warning tier,
# 96 and above = contraindicated.
_AFFIRMING, _WARNING, _CONTRAINDICATED = "affirming", "warning", "contraindicated"


def trustworthiness_vector(claims: VerifiedClaims) -> dict[str, int]:
    """The AR4SI trustworthiness vector for appraised ``claims``."""
    vector = {
        "instance-identity": 2,  # the platform key chains to a trusted root
        "configuration": 32 if claims.debug else 2,  # debug: an unsafe configuration
        "executables": 2,  # measurement matched a reference value
        "hardware": 2,  # genuine TEE hardware
        "runtime-opaque": 2,  # memory encrypted by the TEE
    }
    if claims.simulated:
        # Software simulation: no hardware root of trust, memory visible to the operator
        # (only the OS process boundary separates it). Never affirming.
        vector["hardware"] = 32
        vector["runtime-opaque"] = 32
    return vector


def status_of(vector: Mapping[str, int]) -> str:
    """The AR4SI tier (``affirming``/``warning``/``contraindicated``) of the worst claim."""
    worst = max(vector.values(), default=0)
    if worst >= 96:
        return _CONTRAINDICATED
    if worst >= 32:
        return _WARNING
    return _AFFIRMING


def issue_ear_token(
    claims: VerifiedClaims,
    *,
    key: ECKey,
    issuer: str,
    policy_id: str,
    lifetime: dt.timedelta = dt.timedelta(minutes=5),
    now: dt.datetime | None = None,
) -> str:
    """Sign an EAR JWT (ES256) for ``claims``; ``eat_nonce`` is the nonce they were bound to."""
    if not isinstance(claims, VerifiedClaims):
        raise TypeError("EAR tokens are issued only for VerifiedClaims")
    if not dt.timedelta(0) < lifetime <= MAX_LIFETIME:
        raise ConfigurationError("EAR lifetime must be positive and at most 10 minutes")
    if claims.nonce is None:
        raise EvidenceError("EAR tokens need claims verified with a nonce")
    vector = trustworthiness_vector(claims)
    iat = int((now or dt.datetime.now(dt.UTC)).timestamp())
    payload = {
        "eat_profile": EAR_PROFILE,
        "iss": issuer,
        "iat": iat,
        "exp": iat + int(lifetime.total_seconds()),
        "eat_nonce": claims.nonce,
        "ear.verifier-id": {
            "developer": "cleanroom",
            "build": f"cleanroom {cleanroom.__version__}",
        },
        "submods": {
            SUBMOD: {
                "ear.status": status_of(vector),
                "ear.trustworthiness-vector": vector,
                "ear.appraisal-policy-id": policy_id,
                "ear.veraison.annotated-evidence": claims.annotated_evidence(),
            }
        },
    }
    header = {"alg": "ES256", "typ": "JWT", "kid": key.kid}
    return jwt.encode(header, payload, key, algorithms=_ALGORITHMS)


@dataclass(frozen=True, slots=True)
class EarClaims:
    """The claims of an EAR token whose signature, issuer, lifetime and nonce verified."""

    issuer: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    nonce: str
    status: str
    trustworthiness_vector: Mapping[str, int]
    annotated_evidence: Mapping[str, Any]
    policy_id: str | None
    raw: Mapping[str, Any]

    @property
    def simulated(self) -> bool:
        """Whether the appraised evidence came from the simulated TEE."""
        return self.annotated_evidence.get("simulated") is True


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AttestationError(f"EAR token refused: {message}")


def verify_ear_token(
    token: str,
    jwks: Mapping[str, Any] | KeySet,
    *,
    issuer: str,
    nonce: str,
    now: dt.datetime | None = None,
    leeway: dt.timedelta = dt.timedelta(seconds=30),
) -> EarClaims:
    """Verify an EAR JWT against a pinned JWKS: ES256 signature, ``iss``, ``iat``/``exp``, nonce.

    ``jwks`` is the verifier's key set (as fetched once from ``/.well-known/jwks.json`` and
    pinned — never a key named by the token itself). Raises
    :class:`~cleanroom.errors.AttestationError`; the caller still decides what
    ``status`` it accepts (simulated tokens are at best ``warning``).
    """
    keys = jwks if isinstance(jwks, KeySet) else KeySet.import_key_set(dict(jwks))  # type: ignore[arg-type]
    try:
        decoded = jwt.decode(token, keys, algorithms=_ALGORITHMS)
    except (JoseError, ValueError) as error:
        raise AttestationError("EAR token refused: bad signature or format") from error
    claims = decoded.claims
    when = int((now or dt.datetime.now(dt.UTC)).timestamp())
    slack = int(leeway.total_seconds())
    _require(claims.get("eat_profile") == EAR_PROFILE, "unknown eat_profile")
    _require(claims.get("iss") == issuer, "wrong issuer")
    iat, exp = claims.get("iat"), claims.get("exp")
    if type(iat) is not int or type(exp) is not int:
        raise AttestationError("EAR token refused: iat/exp missing")
    _require(exp - iat <= MAX_LIFETIME.total_seconds(), "lifetime longer than 10 minutes")
    _require(iat <= when + slack, "issued in the future")
    _require(when < exp + slack, "expired")
    token_nonce = claims.get("eat_nonce")
    _require(
        isinstance(token_nonce, str) and hmac.compare_digest(token_nonce.encode(), nonce.encode()),
        "eat_nonce does not match",
    )
    submods = claims.get("submods")
    sub = submods.get(SUBMOD) if isinstance(submods, dict) else None
    if not isinstance(sub, dict):
        raise AttestationError(f"EAR token refused: no {SUBMOD!r} submod")
    vector = sub.get("ear.trustworthiness-vector")
    evidence = sub.get("ear.veraison.annotated-evidence")
    status = sub.get("ear.status")
    if not isinstance(vector, dict) or not isinstance(evidence, dict):
        raise AttestationError("EAR token refused: submod incomplete")
    _require(status == status_of(vector), "ear.status disagrees with the trust vector")
    if evidence.get("simulated") is True:
        _require(status != _AFFIRMING, "simulated evidence appraised as affirming")
    return EarClaims(
        issuer=issuer,
        issued_at=dt.datetime.fromtimestamp(iat, dt.UTC),
        expires_at=dt.datetime.fromtimestamp(exp, dt.UTC),
        nonce=nonce,
        status=str(status),
        trustworthiness_vector=MappingProxyType(dict(vector)),
        annotated_evidence=MappingProxyType(dict(evidence)),
        policy_id=sub.get("ear.appraisal-policy-id"),
        raw=MappingProxyType(dict(claims)),
    )
