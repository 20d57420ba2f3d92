"""Verified claims: the only proof, in the type system, that evidence was appraised."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

# Only cleanroom.attestation.verify holds this object, so only it can build VerifiedClaims.
_VERIFIER_TOKEN = object()

_FIELDS = (
    "tee",
    "measurement",
    "config_id",
    "svn",
    "debug",
    "simulated",
    "report_data",
    "signer",
    "product_id",
    "rtmrs",
    "tcb_status",
    "evidence_time",
    "verified_at",
    "nonce",
    "tee_pubkey",
    "extra",
)


class VerifiedClaims:
    """Claims of evidence whose signature verified and that passed an :class:`AttestationPolicy`.

    Built only by :func:`cleanroom.attestation.verify` / :func:`verify_bound`; calling the
    constructor raises ``TypeError``. Immutable. Fields:

    ``tee`` (``simulated``/``sev-snp``/``tdx``/``sgx``), ``measurement`` (hex), ``config_id``
    (hex or ``None``), ``svn`` (int; TDX: TEE_TCB_SVN hex), ``debug``, ``simulated``,
    ``report_data`` (64 bytes), ``signer`` (hex or ``None``), ``product_id``, ``rtmrs``
    (TDX), ``tcb_status`` (DCAP collateral status or ``None``), ``evidence_time`` (the
    report's own timestamp, simulated only), ``verified_at``, ``nonce`` and ``tee_pubkey``
    (the runtime data bound by REPORTDATA, when verified with a nonce), ``extra``.
    """

    __slots__ = _FIELDS

    tee: str
    measurement: str
    config_id: str | None
    svn: int | str
    debug: bool
    simulated: bool
    report_data: bytes
    signer: str | None
    product_id: int | str | None
    rtmrs: tuple[str, ...]
    tcb_status: str | None
    evidence_time: dt.datetime | None
    verified_at: dt.datetime
    nonce: str | None
    tee_pubkey: Mapping[str, Any] | None
    extra: Mapping[str, Any]

    def __init__(self, *, _token: object = None, **fields: Any) -> None:
        if _token is not _VERIFIER_TOKEN:
            raise TypeError("VerifiedClaims are built only by cleanroom.attestation.verify()")
        if set(fields) != set(_FIELDS):
            raise TypeError("VerifiedClaims needs exactly its documented fields")
        for name in _FIELDS:
            value = fields[name]
            if name in ("extra", "tee_pubkey") and value is not None:
                value = MappingProxyType(dict(value))
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("VerifiedClaims are immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("VerifiedClaims are immutable")

    def __reduce__(self) -> Any:
        raise TypeError("VerifiedClaims cannot be pickled; verify the evidence again")

    def __repr__(self) -> str:
        return (
            f"VerifiedClaims(tee={self.tee!r}, measurement={self.measurement[:16]}..., "
            f"svn={self.svn!r}, debug={self.debug}, simulated={self.simulated})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VerifiedClaims):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _FIELDS)

    def __hash__(self) -> int:
        return hash((self.tee, self.measurement, self.report_data))

    def annotated_evidence(self) -> dict[str, Any]:
        """The claims as JSON-friendly values (EAR ``ear.veraison.annotated-evidence``)."""
        return {
            "tee": self.tee,
            "measurement": self.measurement,
            "config-id": self.config_id,
            "svn": self.svn,
            "debug": self.debug,
            "dbgstat": "enabled" if self.debug else "disabled",
            "simulated": self.simulated,
            "report-data": base64.urlsafe_b64encode(self.report_data).rstrip(b"=").decode(),
            "signer": self.signer,
            "product-id": self.product_id,
            "rtmrs": list(self.rtmrs),
            "tcb-status": self.tcb_status,
            "tee-pubkey": None if self.tee_pubkey is None else dict(self.tee_pubkey),
        }
