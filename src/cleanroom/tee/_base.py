"""The platform protocol and the evidence it produces."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cleanroom.errors import EvidenceError

#: The TEE names cleanroom knows. ``simulated`` is the software stand-in (development only).
TEE_TYPES: frozenset[str] = frozenset({"simulated", "sev-snp", "tdx", "sgx"})

#: Size of REPORTDATA / REPORT_DATA / user_report_data on every supported platform.
REPORT_DATA_SIZE = 64


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise EvidenceError("evidence is not valid base64url") from error


@dataclass(frozen=True, slots=True)
class Evidence:
    """Raw attestation evidence, exactly as the platform produced it.

    Nothing here is verified: pass it to :func:`cleanroom.attestation.verify`.

    ``tee`` names the format of ``raw`` (one of :data:`TEE_TYPES`): ``simulated`` is the
    CBOR layout documented in ``docs/attestation.md``, ``sev-snp`` an AMD
    ATTESTATION_REPORT, ``tdx``/``sgx`` an Intel DCAP quote. ``aux`` carries optional
    supplemental material (the SEV-SNP certificate table from configfs-tsm ``auxblob``).
    """

    tee: str
    raw: bytes
    aux: bytes | None = None

    def __post_init__(self) -> None:
        if self.tee not in TEE_TYPES:
            raise EvidenceError(f"unknown TEE type {self.tee!r}")
        if not isinstance(self.raw, bytes) or not self.raw:
            raise EvidenceError("evidence is empty")

    def __repr__(self) -> str:
        aux = "None" if self.aux is None else f"<{len(self.aux)} bytes>"
        return f"Evidence(tee={self.tee!r}, raw=<{len(self.raw)} bytes>, aux={aux})"

    def to_json(self) -> dict[str, Any]:
        """The JSON form used on the wire: ``{"tee", "raw", "aux"}`` with base64url bytes."""
        return {
            "tee": self.tee,
            "raw": _b64e(self.raw),
            "aux": None if self.aux is None else _b64e(self.aux),
        }

    @classmethod
    def from_json(cls, value: Any) -> Evidence:
        """Parse the form :meth:`to_json` writes; raises :class:`EvidenceError` when malformed."""
        if not isinstance(value, dict):
            raise EvidenceError("evidence must be a JSON object")
        tee, raw, aux = value.get("tee"), value.get("raw"), value.get("aux")
        if not isinstance(tee, str) or not isinstance(raw, str):
            raise EvidenceError("evidence needs string fields 'tee' and 'raw'")
        if aux is not None and not isinstance(aux, str):
            raise EvidenceError("evidence field 'aux' must be a string or null")
        return cls(tee=tee, raw=_b64d(raw), aux=None if aux is None else _b64d(aux))


def pad_report_data(report_data: bytes) -> bytes:
    """``report_data`` zero-padded to 64 bytes; longer input is refused."""
    if not isinstance(report_data, bytes | bytearray):
        raise EvidenceError("report_data must be bytes")
    if len(report_data) > REPORT_DATA_SIZE:
        raise EvidenceError(f"report_data is {len(report_data)} bytes; the maximum is 64")
    return bytes(report_data).ljust(REPORT_DATA_SIZE, b"\0")


@runtime_checkable
class Platform(Protocol):
    """A source of attestation evidence for the code that calls it.

    Guarantees: ``evidence(report_data)`` returns evidence produced by the platform (not by
    the caller) that binds ``report_data`` (zero-padded to 64 bytes) and the platform's
    measurement of the running code. It does not guarantee that the evidence is genuine to
    anyone else — a verifier must check it with :func:`cleanroom.attestation.verify`.
    Raises :class:`~cleanroom.errors.AttestationError` when no evidence can be obtained.
    """

    @property
    def tee(self) -> str:
        """The TEE type of the evidence this platform produces (see :data:`TEE_TYPES`)."""
        ...

    def evidence(self, report_data: bytes) -> Evidence:
        """Evidence binding ``report_data`` (at most 64 bytes)."""
        ...
