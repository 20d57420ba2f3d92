"""Intel DCAP quote parsing: SGX quote v3, SGX/TDX quote v4, TDX quote v5.

All integers little-endian. Every version starts with a 48-byte header::

    0  u16  version (3, 4, 5)          8  u16  QE SVN  (v3; reserved in v4/v5)
    2  u16  attestation key type (2)   10 u16  PCE SVN (v3; reserved in v4/v5)
    4  u32  TEE type (v4/v5: 0 SGX,    12 [16] QE vendor ID
            0x81 TDX; v3: reserved)    28 [20] user data

Then the report body: SGX (384 bytes) at 48; TDX 1.0 (584 bytes) at 48 for v4; for v5 a
descriptor ``u16 body type`` (2 = TDX 1.0, 3 = TDX 1.5 with 648 bytes) and ``u32 body
size`` at 48 and the body at 54. The *signed region* is everything up to the end of the
body; then ``u32 signature data length`` and the signature data.

SGX report body (offsets from its start; add 48 for the quote offset)::

    0 [16] CPUSVN   16 u32 MISCSELECT   48 u64 ATTRIBUTES.FLAGS (bit 1 DEBUG)   56 u64 XFRM
    64 [32] MRENCLAVE   128 [32] MRSIGNER   192 [64] CONFIGID   256 u16 ISVPRODID
    258 u16 ISVSVN   260 u16 CONFIGSVN   304 [16] ISVFAMILYID   320 [64] REPORTDATA

TDX body::

    0 [16] TEE_TCB_SVN   16 [48] MRSEAM   64 [48] MRSIGNERSEAM   112 u64 SEAMATTRIBUTES
    120 u64 TDATTRIBUTES (bit 0 DEBUG)   128 u64 XFAM   136 [48] MRTD   184 [48] MRCONFIGID
    232 [48] MROWNER   280 [48] MROWNERCONFIG   328 [4×48] RTMR0..3   520 [64] REPORTDATA
    TDX 1.5 only: 584 [16] TEE_TCB_SVN2   600 [48] MRSERVICETD

ECDSA-P256 signature data. v3: ``sig[64]`` (r‖s big-endian, SHA-256 over the signed
region), ``attest_pub_key[64]`` (x‖y), ``qe_report[384]``, ``qe_report_sig[64]``,
``u16 auth size, auth data``, ``u16 cert type, u32 cert size, cert data``. v4/v5:
``sig[64]``, ``attest_pub_key[64]``, then certification data of type 6 whose payload is
the same ``qe_report … cert data`` sequence. Cert type 5 is the PEM PCK chain (leaf,
intermediate, root), often ending with a NUL byte.

Trailing bytes: quotes are often returned in a fixed-size buffer (TDX: 5006 bytes with
zero padding), so bytes after the declared end of the signature data are ignored, up to
:data:`MAX_QUOTE_BUFFER` bytes in total. ``HardwareReport.raw`` holds only the declared
quote; ``extra["trailing_bytes"]`` says how many bytes were dropped.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from cleanroom.attestation.hardware._report import HardwareReport, Reader, as_bytes, is_zero
from cleanroom.errors import EvidenceError

HEADER_SIZE = 48
SGX_BODY_SIZE = 384
TDX10_BODY_SIZE = 584
TDX15_BODY_SIZE = 648
TEE_SGX = 0x00000000
TEE_TDX = 0x00000081
ATT_KEY_ECDSA_P256 = 2
CERT_TYPE_PCK_CHAIN = 5
CERT_TYPE_QE_REPORT = 6
#: Largest buffer accepted (the configfs-tsm outblob limit, 32 KiB).
MAX_QUOTE_BUFFER = 32 * 1024
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
_V5_BODY_SIZES = {2: TDX10_BODY_SIZE, 3: TDX15_BODY_SIZE}
SGX_FLAG_DEBUG = 0x02


@dataclass(frozen=True)
class QuoteSignatureData:
    """The parts of a quote's ECDSA signature data needed to verify it."""

    signed_region: bytes
    signature: bytes
    attest_pub_key: bytes
    qe_report: bytes
    qe_report_signature: bytes
    qe_auth_data: bytes
    cert_type: int
    cert_data: bytes

    def pck_chain_pem(self) -> bytes | None:
        """The PEM PCK chain (cert type 5) without a trailing NUL, or ``None``."""
        if self.cert_type != CERT_TYPE_PCK_CHAIN:
            return None
        return self.cert_data.rstrip(b"\x00")


def _sgx_body(body: bytes) -> dict[str, Any]:
    r = Reader(body, "SGX report body")
    return {
        "cpusvn": body[0:16].hex(),
        "miscselect": r.u32(16, "MISCSELECT"),
        "isv_ext_prod_id": body[32:48].hex(),
        "attributes_flags": r.u64(48, "ATTRIBUTES.FLAGS"),
        "xfrm": r.u64(56, "XFRM"),
        "mrenclave": body[64:96].hex(),
        "mrsigner": body[128:160].hex(),
        "config_id": body[192:256],
        "isvprodid": r.u16(256, "ISVPRODID"),
        "isvsvn": r.u16(258, "ISVSVN"),
        "config_svn": r.u16(260, "CONFIGSVN"),
        "isv_family_id": body[304:320].hex(),
        "report_data": body[320:384],
    }


def _signature_data(r: Reader, start: int, end: int, version: int) -> dict[str, Any]:
    """Parse ECDSA-P256 signature data in ``[start, end)``; it must be consumed exactly."""

    def take(pos: int, size: int, name: str, limit: int) -> bytes:
        if pos + size > limit:
            raise EvidenceError(f"quote signature data is truncated at {name}")
        return r.bytes(pos, size, name)

    pos = start
    sig = take(pos, 64, "quote signature", end)
    key = take(pos + 64, 64, "attestation key", end)
    pos += 128
    limit = end
    if version >= 4:
        outer_type = int.from_bytes(take(pos, 2, "certification data type", end), "little")
        outer_size = int.from_bytes(take(pos + 2, 4, "certification data size", end), "little")
        pos += 6
        if outer_type != CERT_TYPE_QE_REPORT:
            raise EvidenceError(
                f"v{version} quote certification data type is {outer_type}, expected 6"
            )
        if pos + outer_size != end:
            raise EvidenceError("quote certification data size does not match its container")
    qe_report = take(pos, SGX_BODY_SIZE, "QE report", limit)
    qe_sig = take(pos + SGX_BODY_SIZE, 64, "QE report signature", limit)
    pos += SGX_BODY_SIZE + 64
    auth_size = int.from_bytes(take(pos, 2, "QE auth data size", limit), "little")
    auth = take(pos + 2, auth_size, "QE auth data", limit)
    pos += 2 + auth_size
    cert_type = int.from_bytes(take(pos, 2, "cert data type", limit), "little")
    cert_size = int.from_bytes(take(pos + 2, 4, "cert data size", limit), "little")
    cert_data = take(pos + 6, cert_size, "cert data", limit)
    pos += 6 + cert_size
    if pos != limit:
        raise EvidenceError("quote signature data has unaccounted bytes")
    return {
        "signature": sig,
        "attest_pub_key": key,
        "qe_report": qe_report,
        "qe_report_signature": qe_sig,
        "qe_auth_data": auth,
        "cert_type": cert_type,
        "cert_data": cert_data,
    }


_SGX_EXTENSION_OID = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
# DER of OID 1.2.840.113741.1.13.1.4 (FMSPC) followed by an OCTET STRING of 6 bytes.
_FMSPC_TLV = bytes.fromhex("060a2a864886f84d010d0104") + b"\x04\x06"


def _pck_fmspc(pem: bytes | None) -> str | None:
    """FMSPC from the SGX extension of the PCK leaf, or ``None`` when it cannot be read.

    Informational only (it selects the TCB Info); the verifiers never rely on it.
    """
    if not pem:
        return None
    try:
        leaf = x509.load_pem_x509_certificates(pem)[0]
        ext = leaf.extensions.get_extension_for_oid(_SGX_EXTENSION_OID).value
    except (ValueError, IndexError, x509.ExtensionNotFound):
        return None
    if not isinstance(ext, x509.UnrecognizedExtension):
        return None
    at = ext.value.find(_FMSPC_TLV)
    if at < 0 or at + len(_FMSPC_TLV) + 6 > len(ext.value):
        return None
    start = at + len(_FMSPC_TLV)
    return ext.value[start : start + 6].hex()


def parse_quote_with_signature(blob: bytes) -> tuple[HardwareReport, QuoteSignatureData]:
    """Parse any supported DCAP quote; also return its signature data for verification."""
    data = as_bytes(blob, "DCAP quote")
    if len(data) > MAX_QUOTE_BUFFER:
        raise EvidenceError(f"DCAP quote buffer is larger than {MAX_QUOTE_BUFFER} bytes")
    r = Reader(data, "DCAP quote")
    r.need(HEADER_SIZE, "header")
    version = r.u16(0, "version")
    if version not in (3, 4, 5):
        raise EvidenceError(f"unsupported DCAP quote version {version} (expected 3, 4 or 5)")
    att_key_type = r.u16(2, "attestation key type")
    if att_key_type != ATT_KEY_ECDSA_P256:
        raise EvidenceError(
            f"unsupported attestation key type {att_key_type} (only 2 = ECDSA-P256)"
        )
    tee_type = TEE_SGX if version == 3 else r.u32(4, "TEE type")
    if tee_type not in (TEE_SGX, TEE_TDX):
        raise EvidenceError(f"unknown TEE type {tee_type:#x} in quote header")
    if version == 5 and tee_type != TEE_TDX:
        raise EvidenceError("only TDX quotes are supported in version 5")

    body_start = HEADER_SIZE
    body_type: int | None = None
    if version == 5:
        body_type = r.u16(48, "body type")
        body_size = r.u32(50, "body size")
        if body_type not in _V5_BODY_SIZES:
            raise EvidenceError(f"unsupported v5 quote body type {body_type} (expected 2 or 3)")
        if body_size != _V5_BODY_SIZES[body_type]:
            raise EvidenceError(
                f"v5 body type {body_type} must be {_V5_BODY_SIZES[body_type]} bytes"
            )
        body_start = HEADER_SIZE + 6
    elif tee_type == TEE_TDX:
        body_size = TDX10_BODY_SIZE
    else:
        body_size = SGX_BODY_SIZE
    body = r.bytes(body_start, body_size, "report body")
    signed_end = body_start + body_size
    sig_len = r.u32(signed_end, "signature data length")
    sig_start = signed_end + 4
    sig_end = sig_start + sig_len
    r.need(sig_end, "signature data")
    parts = _signature_data(r, sig_start, sig_end, version)
    sigdata = QuoteSignatureData(signed_region=data[:signed_end], **parts)

    qe = _sgx_body(sigdata.qe_report)
    extra: dict[str, Any] = {
        "att_key_type": att_key_type,
        "tee_type": tee_type,
        "qe_vendor_id": r.bytes(12, 16, "QE vendor ID").hex(),
        "user_data": r.bytes(28, 20, "user data").hex(),
        "qe_svn": r.u16(8, "QE SVN"),
        "pce_svn": r.u16(10, "PCE SVN"),
        "qe_mrsigner": qe["mrsigner"],
        "qe_isvprodid": qe["isvprodid"],
        "qe_isvsvn": qe["isvsvn"],
        "cert_type": sigdata.cert_type,
        "qe_auth_data_size": len(sigdata.qe_auth_data),
        "trailing_bytes": len(data) - sig_end,
        "fmspc": _pck_fmspc(sigdata.pck_chain_pem()),
    }
    raw = data[:sig_end]
    if tee_type == TEE_SGX:
        sgx = _sgx_body(body)
        extra.update(
            {
                "cpusvn": sgx["cpusvn"],
                "miscselect": sgx["miscselect"],
                "attributes_flags": sgx["attributes_flags"],
                "xfrm": sgx["xfrm"],
                "config_svn": sgx["config_svn"],
                "isv_ext_prod_id": sgx["isv_ext_prod_id"],
                "isv_family_id": sgx["isv_family_id"],
            }
        )
        report = HardwareReport(
            tee="sgx",
            version=version,
            measurement=sgx["mrenclave"],
            rtmrs=(),
            signer=sgx["mrsigner"],
            product_id=sgx["isvprodid"],
            svn=sgx["isvsvn"],
            debug=bool(sgx["attributes_flags"] & SGX_FLAG_DEBUG),
            report_data=sgx["report_data"],
            config_id=sgx["config_id"],
            raw=raw,
            extra=extra,
        )
        return report, sigdata

    extra.update(
        {
            "body_type": body_type,
            "mr_seam": body[16:64].hex(),
            "mr_signer_seam": body[64:112].hex(),
            "seam_attributes": body[112:120].hex(),
            "td_attributes": body[120:128].hex(),
            "xfam": body[128:136].hex(),
            "mr_config_id": body[184:232].hex(),
            "mr_owner": body[232:280].hex(),
            "mr_owner_config": body[280:328].hex(),
        }
    )
    if body_size == TDX15_BODY_SIZE:
        extra["tee_tcb_svn2"] = body[584:600].hex()
        extra["mr_service_td"] = body[600:648].hex()
    report = HardwareReport(
        tee="tdx",
        version=version,
        measurement=body[136:184].hex(),
        rtmrs=tuple(body[328 + 48 * i : 376 + 48 * i].hex() for i in range(4)),
        signer=body[64:112].hex(),
        product_id=None,
        svn=body[0:16].hex(),
        debug=bool(body[120] & 0x01),
        report_data=body[520:584],
        config_id=body[184:232],
        raw=raw,
        extra=extra,
    )
    return report, sigdata


def parse_quote(blob: bytes) -> HardwareReport:
    """Parse an SGX (v3/v4) or TDX (v4/v5) DCAP quote, dispatching on the header.

    Raises :class:`~cleanroom.errors.EvidenceError` for an unknown version, TEE type, body
    type or attestation key type, and for any length that does not add up. Bytes after the
    declared end of the quote are ignored (see the module docstring). Signatures are *not*
    checked here; see :func:`cleanroom.attestation.hardware.verify_quote_signatures` and
    :func:`cleanroom.attestation.hardware.verify_quote_with_collateral`.
    """
    return parse_quote_with_signature(blob)[0]


def parse_sgx_quote(blob: bytes) -> HardwareReport:
    """Parse an SGX DCAP quote (v3, or v4 with TEE type 0); a TDX quote is an EvidenceError."""
    report = parse_quote(blob)
    if report.tee != "sgx":
        raise EvidenceError("expected an SGX quote, got a TDX quote")
    return report


def parse_tdx_quote(blob: bytes) -> HardwareReport:
    """Parse a TDX DCAP quote (v4, or v5 with body type 2 or 3); an SGX quote is refused."""
    report = parse_quote(blob)
    if report.tee != "tdx":
        raise EvidenceError("expected a TDX quote, got an SGX quote")
    return report


def qe_report_binds_key(sigdata: QuoteSignatureData) -> bool:
    """QE REPORTDATA = SHA-256(attest_pub_key ‖ QE auth data) ‖ 32 zero bytes."""
    expected = hashlib.sha256(sigdata.attest_pub_key + sigdata.qe_auth_data).digest()
    report_data = sigdata.qe_report[320:384]
    return hmac.compare_digest(report_data[:32], expected) and is_zero(report_data[32:])


__all__ = [
    "MAX_QUOTE_BUFFER",
    "QuoteSignatureData",
    "parse_quote",
    "parse_quote_with_signature",
    "parse_sgx_quote",
    "parse_tdx_quote",
]
