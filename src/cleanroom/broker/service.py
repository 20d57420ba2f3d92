"""The key broker service: the Confidential Containers KBS protocol for one party. No globals.

Endpoints (JSON; errors are RFC 7807 problem objects)::

    POST /kbs/v0/auth      {"version": "0.x.y", "tee": <tee>, "extra-params": {}}
                           -> {"nonce": <base64, 32 bytes>, "extra-params": {}}
                              + Set-Cookie: kbs-session-id=<id>
    POST /kbs/v0/attest    (cookie) {"runtime-data": {"nonce", "tee-pubkey": <EC JWK>},
                                     "tee-evidence": <Evidence.to_json()> | {"ear": <JWT>}}
                           -> {"token": <attestation token, JWT ES256>}
    GET  /kbs/v0/resource/<party>/cek/<cek name>   (cookie, or Authorization: Bearer <token>)
                           -> flattened JWE of the 32-byte CEK (see cleanroom.broker.jwe)
                              + X-Cleanroom-Release-Receipt: <JWT ES256>
    GET  /.well-known/jwks.json   -> the broker's public token/receipt key

Status codes: 400 malformed request; 401 no/expired session or token, used or foreign
nonce, evidence that does not verify; 403 a release rule refused (``rule`` names it, see
:data:`cleanroom.broker.RELEASE_RULES`); 413 body over 1 MiB. A refusal never carries a
key, and every decision is appended to the party's :class:`DecisionLog`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rfc8785
from cryptography import x509
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from cleanroom.attestation import report_data_for, verify, verify_ear_token
from cleanroom.errors import (
    AttestationError,
    BrokerError,
    ConfigurationError,
    EvidenceError,
    PolicyViolation,
)
from cleanroom.keystores import KeyStore
from cleanroom.store import Store
from cleanroom.tee import Evidence

from .jwe import check_tee_pubkey, seal
from .log import DecisionLog
from .policy import INSECURE_WARNING, ContractAuthority, ReleasePolicy, ResourcePath
from .sessions import COOKIE, AttestedEnclave, Session, SessionStore

_log = logging.getLogger("cleanroom.broker")

MAX_BODY = 1024 * 1024
#: Header carrying the signed release receipt next to a released resource.
RECEIPT_HEADER = "X-Cleanroom-Release-Receipt"
#: ``typ`` of the attestation token and of the release receipt.
TOKEN_TYPE = "cleanroom-kbs-token+jwt"  # noqa: S105 (a JWT typ, not a secret)
RECEIPT_TYPE = "cleanroom-release-receipt+jwt"
#: Trustee's problem type prefix (``kbs/src/error.rs``).
PROBLEM_PREFIX = "https://github.com/confidential-containers/kbs/errors/"
MAX_TOKEN_LIFETIME = dt.timedelta(minutes=10)

#: ``tee`` names accepted at ``/auth`` (Trustee's and cleanroom's) -> cleanroom's name.
TEE_NAMES: Mapping[str, str] = {
    "simulated": "simulated",
    "sev-snp": "sev-snp",
    "snp": "sev-snp",
    "tdx": "tdx",
    "sgx": "sgx",
}
_VERSION = re.compile(r"^0\.[0-9]+\.[0-9]+$")
_UNAUTHENTICATED_RULES = frozenset(
    {"session", "nonce", "token", "evidence", "report-data", "evidence-age"}
)
_ALGORITHMS = ["ES256"]


@dataclass(frozen=True, kw_only=True, slots=True)
class BrokerSettings:
    """Configuration of one party's broker. Keyword-only; the defaults refuse simulation.

    - ``party``: whose keys this broker holds (the ``<repository>`` of its resources).
    - ``issuer``: ``iss`` of its tokens and receipts (default ``cleanroom-broker:<party>``).
    - ``insecure_simulation``: accept simulated (debug) evidence for contracts that allow
      it. INSECURE; warns on every acceptance. ``simulation_roots``: the simulation root
      CA(s) that simulated evidence must chain to (needs ``insecure_simulation``).
    - ``verifier_jwks`` and ``verifier_issuer``: accept EAR tokens from that verifier
      (pinned key set, never a key named by a token). Both or neither.
    - ``session_ttl``, ``token_lifetime`` (at most 10 min), ``max_evidence_age``.
    - ``secure_cookie``: mark the session cookie ``Secure`` (when served over TLS).
    - ``veto_file``: the party's own veto list (contract hashes, one per line), read on
      every request; a listed contract is refused even if the store says it is in force.
    """

    party: str
    issuer: str | None = None
    insecure_simulation: bool = False
    simulation_roots: Sequence[x509.Certificate] = field(default_factory=tuple)
    verifier_jwks: Mapping[str, Any] | None = None
    verifier_issuer: str | None = None
    session_ttl: dt.timedelta = dt.timedelta(minutes=5)
    token_lifetime: dt.timedelta = dt.timedelta(minutes=5)
    max_evidence_age: dt.timedelta = dt.timedelta(minutes=5)
    secure_cookie: bool = False
    veto_file: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.party, str) or not re.match(
            r"^[A-Za-z_][A-Za-z0-9_]{0,47}$", self.party
        ):
            raise ConfigurationError("party must be an identifier")
        if self.issuer is None:
            object.__setattr__(self, "issuer", f"cleanroom-broker:{self.party}")
        if type(self.insecure_simulation) is not bool:
            raise ConfigurationError("insecure_simulation must be a bool")
        object.__setattr__(self, "simulation_roots", tuple(self.simulation_roots))
        if self.simulation_roots and not self.insecure_simulation:
            raise ConfigurationError("simulation roots need insecure_simulation=True")
        if self.insecure_simulation and not self.simulation_roots and self.verifier_jwks is None:
            raise ConfigurationError(
                "insecure_simulation needs simulation roots (or a verifier) to check evidence"
            )
        if (self.verifier_jwks is None) != (self.verifier_issuer is None):
            raise ConfigurationError("verifier_jwks and verifier_issuer go together")
        if self.verifier_jwks is not None:
            try:
                KeySet.import_key_set(dict(self.verifier_jwks))  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError) as error:
                raise ConfigurationError("verifier_jwks is not a JWK set") from error
        if not dt.timedelta(0) < self.token_lifetime <= MAX_TOKEN_LIFETIME:
            raise ConfigurationError("token_lifetime must be positive and at most 10 minutes")
        if not dt.timedelta(0) < self.max_evidence_age <= dt.timedelta(hours=1):
            raise ConfigurationError("max_evidence_age must be positive and at most one hour")


class _Problem(Exception):
    def __init__(self, status: int, kind: str, detail: str, rule: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail, self.rule = status, kind, detail, rule


def _problem_response(problem: _Problem) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_PREFIX + problem.kind,
        "title": problem.kind,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.rule is not None:
        body["rule"] = problem.rule
    return JSONResponse(body, status_code=problem.status, media_type="application/problem+json")


def _violation(violation: PolicyViolation) -> _Problem:
    if violation.rule in _UNAUTHENTICATED_RULES:
        return _Problem(401, "AttestationFailed", str(violation), violation.rule)
    return _Problem(403, "PolicyDeny", str(violation), violation.rule)


def _b64url_json(segment: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        return None


def _same_json(a: Any, b: Any) -> bool:
    try:
        return hmac.compare_digest(rfc8785.dumps(a), rfc8785.dumps(b))
    except (TypeError, ValueError, rfc8785.CanonicalizationError):
        return False


class _Broker:
    """The request handlers' state (one per app)."""

    def __init__(
        self,
        settings: BrokerSettings,
        policy: ReleasePolicy,
        key: ECKey,
        log: DecisionLog,
        now: Callable[[], dt.datetime],
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.key = key
        self.log = log
        self.now = now
        self.sessions = SessionStore(ttl=settings.session_ttl)
        self.verifier_keys = (
            None
            if settings.verifier_jwks is None
            else KeySet.import_key_set(dict(settings.verifier_jwks))  # type: ignore[arg-type]
        )

    # -- tokens ---------------------------------------------------------------------------

    def _sign(self, typ: str, claims: dict[str, Any]) -> str:
        header = {"alg": "ES256", "typ": typ, "kid": self.key.kid}
        return jwt.encode(header, claims, self.key, algorithms=_ALGORITHMS)

    def issue_token(self, enclave: AttestedEnclave, now: dt.datetime) -> tuple[str, str]:
        token_id = secrets.token_urlsafe(16)
        iat = int(now.timestamp())
        claims = {
            "iss": self.settings.issuer,
            "iat": iat,
            "exp": iat + int(self.settings.token_lifetime.total_seconds()),
            "jti": token_id,
            "cleanroom.attested": enclave.claims(),
        }
        return self._sign(TOKEN_TYPE, claims), token_id

    def check_token(self, token: str, now: dt.datetime) -> AttestedEnclave:
        try:
            decoded = jwt.decode(token, self.key, algorithms=_ALGORITHMS)
        except (JoseError, ValueError, TypeError):
            raise PolicyViolation("token", "the bearer token does not verify") from None
        if decoded.header.get("typ") != TOKEN_TYPE:
            raise PolicyViolation("token", "not an attestation token of this broker")
        claims = decoded.claims
        exp, iat = claims.get("exp"), claims.get("iat")
        if (
            claims.get("iss") != self.settings.issuer
            or type(exp) is not int
            or type(iat) is not int
        ):
            raise PolicyViolation("token", "the bearer token is not from this broker")
        when = int(now.timestamp())
        if not iat <= when < exp:
            raise PolicyViolation("token", "the bearer token has expired")
        try:
            return AttestedEnclave.from_claims(claims["cleanroom.attested"])
        except (KeyError, TypeError, ValueError):
            raise PolicyViolation("token", "the bearer token lacks attestation claims") from None

    def receipt(
        self, *, contract: str, resource: str, enclave: AttestedEnclave, now: dt.datetime
    ) -> tuple[str, str]:
        receipt_id = secrets.token_urlsafe(16)
        claims = {
            "iss": self.settings.issuer,
            "iat": int(now.timestamp()),
            "jti": receipt_id,
            "party": self.settings.party,
            "contract": contract,
            "resource": resource,
            "cek": resource.rsplit("/", 1)[-1],
            "tee": enclave.tee,
            "measurement": enclave.measurement,
            "simulated": enclave.simulated,
            "tee-pubkey-thumbprint": ECKey.import_key(
                dict[str, str | list[str]](enclave.tee_pubkey)
            ).thumbprint(),
        }
        return self._sign(RECEIPT_TYPE, claims), receipt_id

    # -- attestation ----------------------------------------------------------------------

    def attest_evidence(
        self, raw: Any, nonce: str, runtime_data: dict[str, Any], session: Session, now: dt.datetime
    ) -> AttestedEnclave:
        evidence = Evidence.from_json(raw)
        if evidence.tee != session.tee:
            raise PolicyViolation("evidence", "the evidence is not of the TEE named at /auth")
        claims = verify(
            evidence,
            self.policy.appraisal_policy(),
            nonce=nonce,
            runtime_data=runtime_data,
            trusted_roots=self.settings.simulation_roots,
            now=now,
        )
        return AttestedEnclave(
            via="evidence",
            tee=claims.tee,
            measurement=claims.measurement,
            config_id=claims.config_id,
            svn=claims.svn,
            debug=claims.debug,
            simulated=claims.simulated,
            tee_pubkey=runtime_data["tee-pubkey"],
            attested_at=now,
        )

    def attest_ear(
        self, token: Any, runtime_data: dict[str, Any], now: dt.datetime
    ) -> AttestedEnclave:
        if self.verifier_keys is None or self.settings.verifier_issuer is None:
            raise PolicyViolation("evidence", "this broker trusts no verifier's EAR tokens")
        parts = token.split(".") if isinstance(token, str) else []
        payload = _b64url_json(parts[1]) if len(parts) == 3 else None
        eat_nonce = payload.get("eat_nonce") if isinstance(payload, dict) else None
        if not isinstance(eat_nonce, str):
            raise EvidenceError("the EAR token is malformed")
        # The verifier's nonce is read here only to be checked by verify_ear_token, which
        # verifies the signature over it with the pinned key set.
        ear = verify_ear_token(
            token,
            self.verifier_keys,
            issuer=self.settings.verifier_issuer,
            nonce=eat_nonce,
            now=now,
        )
        evidence = ear.annotated_evidence
        if not _same_json(evidence.get("tee-pubkey"), runtime_data["tee-pubkey"]):
            raise PolicyViolation("evidence", "the EAR token was issued for another tee-pubkey")
        expected = base64.urlsafe_b64encode(report_data_for(eat_nonce, runtime_data["tee-pubkey"]))
        reported = evidence.get("report-data")
        if not (
            isinstance(reported, str)
            and hmac.compare_digest(reported.encode(), expected.rstrip(b"="))
        ):
            raise PolicyViolation("evidence", "the EAR token does not bind the tee-pubkey")
        simulated = evidence.get("simulated") is True
        acceptable = ear.status == "affirming" or (
            simulated and ear.status == "warning" and self.settings.insecure_simulation
        )
        if not acceptable:
            raise PolicyViolation("ear-status", f"the verifier appraised the TEE as {ear.status}")
        svn = evidence.get("svn")
        config_id = evidence.get("config-id")
        if not isinstance(svn, int | str) or not (config_id is None or isinstance(config_id, str)):
            raise EvidenceError("the EAR token's annotated evidence is malformed")
        return AttestedEnclave(
            via="ear",
            tee=str(evidence.get("tee")),
            measurement=str(evidence.get("measurement")),
            config_id=config_id,
            svn=svn,
            debug=evidence.get("debug") is not False,
            simulated=simulated,
            tee_pubkey=runtime_data["tee-pubkey"],
            attested_at=now,
        )


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise _Problem(413, "PayloadTooLarge", "request body over 1 MiB")
    try:
        document = json.loads(body)
    except ValueError:
        raise _Problem(400, "InvalidRequest", "the body is not JSON") from None
    if not isinstance(document, dict):
        raise _Problem(400, "InvalidRequest", "the body must be a JSON object")
    return document


def _client(request: Request) -> str | None:
    return None if request.client is None else f"{request.client.host}:{request.client.port}"


def create_app(
    settings: BrokerSettings,
    *,
    store: Store,
    contracts: ContractAuthority,
    key_store: KeyStore,
    decision_log: DecisionLog,
    signing_key: ECKey | None = None,
    _now: Callable[[], dt.datetime] | None = None,
) -> FastAPI:
    """The broker app for ``settings.party``.

    ``store`` holds the party's wrapped keys and datasets, ``contracts`` the contracts and
    their signatures (a :class:`~cleanroom.contract.ContractRegistry`), ``key_store`` the
    party's column master keys, ``decision_log`` where every decision goes.
    ``signing_key`` (P-256) signs tokens and receipts; default a fresh key per app.
    """
    if not isinstance(settings, BrokerSettings):
        raise ConfigurationError("settings must be BrokerSettings")
    key = signing_key or ECKey.generate_key("P-256", private=True)
    if key.curve_name != "P-256" or not key.is_private:
        raise ConfigurationError("the broker signing key must be a private P-256 key")
    key.ensure_kid()
    policy = ReleasePolicy(
        party=settings.party,
        store=store,
        contracts=contracts,
        key_store=key_store,
        insecure_simulation=settings.insecure_simulation,
        max_evidence_age=settings.max_evidence_age,
        veto_file=settings.veto_file,
    )
    broker = _Broker(settings, policy, key, decision_log, _now or (lambda: dt.datetime.now(dt.UTC)))
    public_jwks = {"keys": [key.as_dict(private=False)]}
    party = settings.party
    if settings.insecure_simulation:
        _log.warning("INSECURE: broker for %s accepts simulated TEE evidence", party)
    app = FastAPI(
        title=f"cleanroom key broker ({party})", docs_url=None, redoc_url=None, openapi_url=None
    )

    def record(request: Request, **fields: Any) -> None:
        decision_log.append(
            party=party,
            insecure_simulation=settings.insecure_simulation,
            client=_client(request),
            now=broker.now(),
            **fields,
        )

    @app.get("/.well-known/jwks.json")
    def jwks() -> dict[str, Any]:
        return public_jwks

    @app.post("/kbs/v0/auth")
    async def auth(request: Request) -> JSONResponse:
        try:
            document = await _json_body(request)
            version, tee = document.get("version"), document.get("tee")
            if not isinstance(version, str) or not _VERSION.match(version):
                raise _Problem(400, "ProtocolVersion", "unsupported KBS protocol version")
            if tee not in TEE_NAMES:
                raise _Problem(400, "UnsupportedTee", "unsupported TEE type")
        except _Problem as problem:
            return _problem_response(problem)
        session = broker.sessions.start(TEE_NAMES[str(tee)], now=broker.now())
        response = JSONResponse({"nonce": session.nonce, "extra-params": {}})
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=int(settings.session_ttl.total_seconds()),
            path="/kbs",
            httponly=True,
            samesite="strict",
            secure=settings.secure_cookie,
        )
        return response

    @app.post("/kbs/v0/attest")
    async def attest(request: Request) -> JSONResponse:
        try:
            document = await _json_body(request)
        except _Problem as problem:
            record(
                request,
                action="attest",
                decision="refused",
                reason="request",
                detail=problem.detail,
            )
            return _problem_response(problem)
        # Appraisal reads the store and verifies signatures: keep it off the event loop.
        return await run_in_threadpool(attest_document, request, document)

    def attest_document(request: Request, document: dict[str, Any]) -> JSONResponse:
        now = broker.now()
        enclave: AttestedEnclave | None = None
        try:
            session = broker.sessions.get(request.cookies.get(COOKIE), now=now)
            if session is None:
                raise PolicyViolation("session", "no session (call /kbs/v0/auth) or it expired")
            nonce = broker.sessions.take_nonce(session)
            if nonce is None:
                raise PolicyViolation("nonce", "this session's nonce was already used")
            runtime_data = document.get("runtime-data")
            if not isinstance(runtime_data, dict) or set(runtime_data) != {"nonce", "tee-pubkey"}:
                raise _Problem(400, "InvalidRequest", "runtime-data must be {nonce, tee-pubkey}")
            bound = runtime_data.get("nonce")
            if not (isinstance(bound, str) and hmac.compare_digest(bound.encode(), nonce.encode())):
                raise PolicyViolation(
                    "nonce", "the runtime data does not carry this session's nonce"
                )
            check_tee_pubkey(runtime_data["tee-pubkey"])
            evidence = document.get("tee-evidence")
            if isinstance(evidence, str):  # some KBS clients send it JSON-encoded
                evidence = json.loads(evidence)
            if isinstance(evidence, dict) and set(evidence) == {"ear"}:
                enclave = broker.attest_ear(evidence["ear"], runtime_data, now)
            else:
                enclave = broker.attest_evidence(evidence, nonce, runtime_data, session, now)
            contract = policy.check_contract(enclave)
        except _Problem as problem:
            record(
                request,
                action="attest",
                decision="refused",
                reason="request",
                detail=problem.detail,
            )
            return _problem_response(problem)
        except PolicyViolation as violation:
            record(
                request,
                action="attest",
                decision="refused",
                reason=violation.rule,
                detail=str(violation),
                **_enclave_fields(enclave),
            )
            return _problem_response(_violation(violation))
        except (AttestationError, ValueError) as error:
            detail = str(error) if isinstance(error, AttestationError) else "malformed evidence"
            record(request, action="attest", decision="refused", reason="evidence", detail=detail)
            return _problem_response(_Problem(401, "AttestationFailed", detail, "evidence"))
        token, token_id = broker.issue_token(enclave, now)
        broker.sessions.mark_attested(session, enclave, token_id)
        record(
            request,
            action="attest",
            decision="attested",
            reason="ok",
            detail=f"attested via {enclave.via} for contract {contract.id} v{contract.version}",
            **_enclave_fields(enclave),
        )
        return JSONResponse({"token": token})

    @app.get("/kbs/v0/resource/{repository}/{kind}/{tag}")
    def resource(repository: str, kind: str, tag: str, request: Request) -> JSONResponse:
        now = broker.now()
        enclave: AttestedEnclave | None = None
        path = f"{repository}/{kind}/{tag}"
        try:
            header = request.headers.get("authorization")
            if header is not None:
                scheme, _, token = header.partition(" ")
                if scheme.lower() != "bearer" or not token:
                    raise PolicyViolation("token", "only Bearer tokens are accepted")
                enclave = broker.check_token(token.strip(), now)
            else:
                session = broker.sessions.get(request.cookies.get(COOKIE), now=now)
                if session is None:
                    raise PolicyViolation("session", "no session or token, or it expired")
                if session.attested is None:
                    raise PolicyViolation("session", "the session has not attested")
                enclave = session.attested
            target = ResourcePath.parse(repository, kind, tag)
            authorization = policy.authorize(enclave, target)
            cek = policy.release(authorization)
            try:
                sealed = seal(cek.secret_bytes(), enclave.tee_pubkey)
            finally:
                cek.zero()
        except PolicyViolation as violation:
            record(
                request,
                action="resource",
                decision="refused",
                reason=violation.rule,
                detail=str(violation),
                resource=path,
                **_enclave_fields(enclave),
            )
            return _problem_response(_violation(violation))
        except BrokerError as error:
            record(
                request,
                action="resource",
                decision="refused",
                reason="seal",
                detail=str(error),
                resource=path,
            )
            return _problem_response(
                _Problem(500, "InternalError", "the resource could not be sealed")
            )
        receipt, receipt_id = broker.receipt(
            contract=authorization.contract_hash, resource=path, enclave=enclave, now=now
        )
        if enclave.simulated or enclave.debug:
            _log.warning(INSECURE_WARNING, party, f"released {path}")
        record(
            request,
            action="resource",
            decision="released",
            reason="ok",
            detail="released under a contract in force",
            resource=path,
            receipt=receipt_id,
            **_enclave_fields(enclave),
        )
        return JSONResponse(sealed, headers={RECEIPT_HEADER: receipt})

    return app


def _enclave_fields(enclave: AttestedEnclave | None) -> dict[str, Any]:
    if enclave is None:
        return {}
    return {
        "contract": enclave.config_id,
        "tee": enclave.tee,
        "measurement": enclave.measurement,
        "simulated": enclave.simulated,
    }


__all__ = [
    "MAX_BODY",
    "PROBLEM_PREFIX",
    "RECEIPT_HEADER",
    "RECEIPT_TYPE",
    "TEE_NAMES",
    "TOKEN_TYPE",
    "BrokerSettings",
    "create_app",
]
