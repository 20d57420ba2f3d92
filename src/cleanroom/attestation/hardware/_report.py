"""The result types every hardware parser and verifier returns, and a bounds-checked reader."""

from __future__ import annotations

import copy
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

from cleanroom.errors import EvidenceError

TeeName = Literal["sev-snp", "tdx", "sgx"]


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, eq=False, repr=False)
class HardwareReport:
    """What a parser read from one piece of real TEE evidence. Nothing here is verified yet.

    Field meaning per TEE:

    ============  ==========================  =============================  ======================
    field         SEV-SNP                     TDX                            SGX
    ============  ==========================  =============================  ======================
    measurement   MEASUREMENT (48 B)          MRTD (48 B)                    MRENCLAVE (32 B)
    rtmrs         ``()``                      RTMR0..3                       ``()``
    signer        AUTHOR_KEY_DIGEST if        MRSIGNERSEAM (48 B; all zero   MRSIGNER (32 B)
                  AUTHOR_KEY_EN, else         for the Intel-signed module)
                  ID_KEY_DIGEST, or ``None``
                  when no ID block was used
    product_id    IMAGE_ID hex                ``None``                       ISVPRODID (int)
    svn           GUEST_SVN (int)             TEE_TCB_SVN hex                ISVSVN (int)
    debug         POLICY bit 19               TD_ATTRIBUTES bit 0            ATTRIBUTES bit 1
    config_id     HOST_DATA (32 B)            MRCONFIGID (48 B)              CONFIGID (64 B)
    ============  ==========================  =============================  ======================

    Hex strings are lower case, in the byte order of the structure. ``raw`` is exactly the
    evidence bytes the parser accepted (for a DCAP quote, without trailing padding).
    ``extra`` holds the remaining fields (VMPL, policy, TCB versions, FMSPC, ...); its
    values are JSON-friendly (str, int, bool, dicts and lists of those).
    """

    tee: TeeName
    version: int
    measurement: str
    rtmrs: tuple[str, ...]
    signer: str | None
    product_id: int | str | None
    svn: int | str
    debug: bool
    report_data: bytes
    config_id: bytes | None
    raw: bytes
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", _frozen(self.extra))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of every field except ``raw`` (bytes as lower-case hex)."""
        return {
            "tee": self.tee,
            "version": self.version,
            "measurement": self.measurement,
            "rtmrs": list(self.rtmrs),
            "signer": self.signer,
            "product_id": self.product_id,
            "svn": self.svn,
            "debug": self.debug,
            "report_data": self.report_data.hex(),
            "config_id": None if self.config_id is None else self.config_id.hex(),
            "extra": copy.deepcopy(dict(self.extra)),
        }

    def __repr__(self) -> str:
        return (
            f"HardwareReport(tee={self.tee!r}, version={self.version}, "
            f"measurement={self.measurement[:16]}..., debug={self.debug})"
        )


@dataclass(frozen=True, eq=False, repr=False)
class HardwareVerification:
    """The outcome of a successful signature/chain verification of a :class:`HardwareReport`.

    Only this package's verifiers build it. ``checks`` names every check that passed, in
    order, so a reader can see what was and was not verified (for example a DCAP quote
    verified without collateral has no ``"tcb-info"`` check and ``tcb_status`` is ``None``).
    """

    report: HardwareReport
    root: str
    endorsement: str
    checks: tuple[str, ...]
    verified_at: datetime
    tcb_status: str | None = None
    advisory_ids: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"HardwareVerification(tee={self.report.tee!r}, root={self.root!r}, "
            f"endorsement={self.endorsement!r}, tcb_status={self.tcb_status!r})"
        )


def resolve_now(now: datetime | None) -> datetime:
    """``now`` as an aware UTC datetime; the wall clock when ``None``."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise EvidenceError("verification time must be timezone-aware")
    return now.astimezone(UTC)


class Reader:
    """Bounds-checked little-endian reads from an evidence blob; every miss is an EvidenceError."""

    def __init__(self, blob: bytes, what: str) -> None:
        self.blob = blob
        self.what = what

    def need(self, end: int, field_name: str) -> None:
        if end > len(self.blob):
            raise EvidenceError(
                f"{self.what} is truncated: {field_name} ends at byte {end}, "
                f"but the evidence has {len(self.blob)} bytes"
            )

    def bytes(self, offset: int, size: int, field_name: str) -> bytes:
        self.need(offset + size, field_name)
        return self.blob[offset : offset + size]

    def u16(self, offset: int, field_name: str) -> int:
        self.need(offset + 2, field_name)
        return int(struct.unpack_from("<H", self.blob, offset)[0])

    def u32(self, offset: int, field_name: str) -> int:
        self.need(offset + 4, field_name)
        return int(struct.unpack_from("<I", self.blob, offset)[0])

    def u64(self, offset: int, field_name: str) -> int:
        self.need(offset + 8, field_name)
        return int(struct.unpack_from("<Q", self.blob, offset)[0])


def is_zero(data: bytes) -> bool:
    """True when every byte is zero (not secret data, so no constant-time need)."""
    return not any(data)


def as_bytes(blob: object, what: str) -> bytes:
    """Accept ``bytes``/``bytearray``/``memoryview``; anything else is an EvidenceError."""
    if isinstance(blob, bytes | bytearray | memoryview):
        return bytes(blob)
    raise EvidenceError(f"{what} must be bytes, not {type(blob).__name__}")
