"""The attester's side of the verifier protocol: challenge, evidence, token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from cleanroom.attestation.report_data import report_data_for, runtime_data_for
from cleanroom.errors import AttestationError, PolicyViolation
from cleanroom.tee._base import Platform


def request_ear_token(
    client: httpx.Client, platform: Platform, tee_pubkey_jwk: Mapping[str, Any]
) -> tuple[str, str]:
    """Get an EAR token for ``platform`` from the verifier ``client`` points at.

    ``client`` has the verifier's base URL; ``tee_pubkey_jwk`` is the public half of the
    enclave's ephemeral key, bound into REPORTDATA with the nonce. Returns
    ``(token, nonce)``. A refusal raises :class:`PolicyViolation` (403, with its rule) or
    :class:`AttestationError`.
    """
    reply = client.post("/challenge", json={})
    if reply.status_code != 200:
        raise AttestationError(f"the verifier refused a challenge (HTTP {reply.status_code})")
    nonce = reply.json().get("nonce")
    if not isinstance(nonce, str):
        raise AttestationError("the verifier sent no nonce")
    evidence = platform.evidence(report_data_for(nonce, tee_pubkey_jwk))
    body = {"evidence": evidence.to_json(), "runtime-data": runtime_data_for(nonce, tee_pubkey_jwk)}
    reply = client.post("/attest", json=body)
    if reply.status_code == 403:
        problem = reply.json()
        rule = str(problem.get("rule"))
        raise PolicyViolation(rule, str(problem.get("detail")).removeprefix(f"{rule}: "))
    if reply.status_code != 200:
        raise AttestationError(f"the verifier refused the evidence (HTTP {reply.status_code})")
    token = reply.json().get("token")
    if not isinstance(token, str):
        raise AttestationError("the verifier sent no token")
    return token, nonce
