"""Verification of a SEV-SNP report against the AMD chain ARK → ASK/ASVK → VCEK/VLEK.

Trust anchors are the SHA-256 fingerprints of the ARK *SubjectPublicKeyInfo* pinned in
:data:`AMD_ARK_SPKI_SHA256`; a chain that is internally consistent but ends at any other
key fails. The ARK/ASK/ASVK certificates are RSA-4096 signed with RSASSA-PSS/SHA-384;
the VCEK/VLEK is an ECDSA P-384 key signed by the ASK (VCEK) or the ASVK (VLEK), and it
signs bytes 0x000..0x29F of the report (r and s little-endian, 72 bytes each).

AMD issues VCEK/VLEK certificates with serial number 0, which RFC 5280 forbids;
``cryptography`` still loads them but warns that a future release will refuse. The warning
is silenced for exactly that load, and the version is pinned by the lock file.
"""

from __future__ import annotations

import struct
import uuid
import warnings
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import CryptographyDeprecationWarning

from cleanroom.attestation.hardware._report import (
    HardwareReport,
    HardwareVerification,
    as_bytes,
    resolve_now,
)
from cleanroom.attestation.hardware.snp import decode_tcb, parse_snp_report, snp_signature
from cleanroom.errors import EvidenceError

#: SHA-256 of the DER SubjectPublicKeyInfo of each AMD Root Key (ARK), by product.
#: Milan: computed from ``tests/vectors/evidence/amd-milan-ask-ark.pem`` (= AMD KDS
#: ``/vcek/v1/Milan/cert_chain``). Genoa and Turin: computed from the ARK certificates that
#: google/go-sev-guest ships in ``verify/trust/`` (self-signature checked); no Genoa or Turin
#: report is among our vectors, so those two pins are not exercised by a test.
AMD_ARK_SPKI_SHA256: dict[str, str] = {
    "Milan": "9f056bee44377e29308cb5ffa895bdfb62d18881fa6bed8d6f075b0204089cb9",
    "Genoa": "429a69c9422aa258ee4d8db5fcda9c6470ef15f8cd5a9cebd6cbc7d90b863831",
    "Turin": "4f125410563a2ab9a50356f9243f6fe0b6f73de98603f53f90339c70e9d7ad08",
}

_AMD_OID = "1.3.6.1.4.1.3704.1"
_OID_PRODUCT_NAME = f"{_AMD_OID}.2"
_OID_HWID = f"{_AMD_OID}.4"
_OID_CSP_ID = f"{_AMD_OID}.5"
_TCB_OIDS = {
    "bl": f"{_AMD_OID}.3.1",
    "tee": f"{_AMD_OID}.3.2",
    "snp": f"{_AMD_OID}.3.3",
    "ucode": f"{_AMD_OID}.3.8",
}
_FMC_OID = f"{_AMD_OID}.3.9"
_EK_COMMON_NAMES = {"VCEK": "SEV-VCEK", "VLEK": "SEV-VLEK"}

#: GUIDs of the SEV-SNP certificate table (GHCB spec; configfs-tsm ``auxblob``).
CERT_TABLE_GUIDS: dict[str, str] = {
    "63da758d-e664-4564-adc5-f4b93be8accd": "vcek",
    "a8074bc2-a25a-483e-aae6-39c045a0b8a1": "vlek",
    "4ab7b379-bbac-4fe4-a02f-05aef327c782": "ask",
    "c0b406a4-a803-4952-9743-3fb6014cd0ae": "ark",
}
_CERT_TABLE_ENTRY = 24


def parse_snp_cert_table(table: bytes) -> dict[str, bytes]:
    """Split a SEV-SNP certificate table (the configfs-tsm ``auxblob``) into DER certificates.

    Layout: entries of ``GUID[16] (RFC 4122 byte order), u32 offset, u32 length``, ended by
    an all-zero entry; offsets count from the start of the table and must point past the
    entries. Known GUIDs map to ``"vcek"``, ``"vlek"``, ``"ask"``, ``"ark"``; any other
    entry is returned under its GUID string. Raises EvidenceError on a malformed table.
    """
    data = as_bytes(table, "SEV-SNP certificate table")
    entries: list[tuple[str, int, int]] = []
    pos = 0
    while True:
        if pos + _CERT_TABLE_ENTRY > len(data):
            raise EvidenceError("SEV-SNP certificate table has no terminating zero entry")
        guid_bytes = data[pos : pos + 16]
        offset, length = struct.unpack_from("<II", data, pos + 16)
        pos += _CERT_TABLE_ENTRY
        if offset == 0 and length == 0 and not any(guid_bytes):
            break
        entries.append((str(uuid.UUID(bytes=guid_bytes)), offset, length))
    out: dict[str, bytes] = {}
    for guid, offset, length in entries:
        if offset < pos or offset + length > len(data):
            raise EvidenceError("SEV-SNP certificate table entry points outside the table")
        name = CERT_TABLE_GUIDS.get(guid, guid)
        if name in out:
            raise EvidenceError(f"SEV-SNP certificate table lists {name!r} twice")
        out[name] = data[offset : offset + length]
    return out


def _load_certs(data: bytes, what: str) -> list[x509.Certificate]:
    """PEM (one or more) or a single DER certificate. AMD leaf serials of 0 are tolerated."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                return x509.load_pem_x509_certificates(data)
            return [x509.load_der_x509_certificate(data)]
        except ValueError as exc:
            raise EvidenceError(f"{what} is not a valid X.509 certificate") from exc


def _cn(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def _spki_sha256(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize().hex()


def _check_pss_signed(child: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    """``child`` carries an RSASSA-PSS/SHA-384 signature by ``issuer``'s RSA key."""
    key = issuer.public_key()
    params = child.signature_algorithm_parameters
    if not isinstance(key, rsa.RSAPublicKey) or not isinstance(params, padding.PSS):
        raise EvidenceError(f"{what} is not RSASSA-PSS signed by an RSA key")
    if not isinstance(child.signature_hash_algorithm, hashes.SHA384):
        raise EvidenceError(f"{what} signature does not use SHA-384")
    if child.issuer != issuer.subject:
        raise EvidenceError(f"{what} was not issued by {_cn(issuer.subject)!r}")
    try:
        key.verify(child.signature, child.tbs_certificate_bytes, params, hashes.SHA384())
    except (InvalidSignature, UnsupportedAlgorithm) as exc:
        raise EvidenceError(f"{what} signature does not verify") from exc


def _check_ca(cert: x509.Certificate, what: str) -> None:
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        ca = False
    if not ca:
        raise EvidenceError(f"{what} is not a CA certificate")


def _check_validity(cert: x509.Certificate, now: datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise EvidenceError(
            f"{what} is not valid at {now.isoformat()} "
            f"(valid {cert.not_valid_before_utc.isoformat()} .. "
            f"{cert.not_valid_after_utc.isoformat()})"
        )


def _der_small_int(value: bytes, what: str) -> int:
    """A DER INTEGER (tag 2, short length) as found in the AMD TCB extensions."""
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2 or value[1] > 8:
        raise EvidenceError(f"{what} is not a small DER INTEGER")
    return int.from_bytes(value[2:], "big", signed=True)


def _der_ia5(value: bytes, what: str) -> str:
    if len(value) < 2 or value[0] != 0x16 or value[1] != len(value) - 2:
        raise EvidenceError(f"{what} is not a short DER IA5String")
    return value[2:].decode("ascii", errors="replace")


def _amd_extensions(cert: x509.Certificate) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for ext in cert.extensions:
        if ext.oid.dotted_string.startswith(_AMD_OID + ".") and isinstance(
            ext.value, x509.UnrecognizedExtension
        ):
            out[ext.oid.dotted_string] = ext.value.value
    return out


def endorsement_key_tcb(cert_der_or_pem: bytes) -> dict[str, Any]:
    """The TCB SPLs, product name, hwID (VCEK) or cspID (VLEK) in an AMD endorsement cert."""
    cert = _load_certs(as_bytes(cert_der_or_pem, "endorsement key certificate"), "VCEK/VLEK")[0]
    return _ek_info(cert)


def _ek_info(cert: x509.Certificate) -> dict[str, Any]:
    exts = _amd_extensions(cert)
    info: dict[str, Any] = {}
    for name, oid in _TCB_OIDS.items():
        if oid not in exts:
            raise EvidenceError(f"endorsement key certificate lacks the {name} SPL extension")
        info[name] = _der_small_int(exts[oid], f"{name} SPL extension")
    if _FMC_OID in exts:
        info["fmc"] = _der_small_int(exts[_FMC_OID], "fmc SPL extension")
    if _OID_PRODUCT_NAME in exts:
        info["product_name"] = _der_ia5(exts[_OID_PRODUCT_NAME], "productName extension")
    if _OID_HWID in exts:
        info["hwid"] = exts[_OID_HWID].hex()
    if _OID_CSP_ID in exts:
        info["csp_id"] = _der_ia5(exts[_OID_CSP_ID], "cspID extension")
    return info


def _find_ark(
    certs: list[x509.Certificate], trusted: dict[str, str]
) -> tuple[str, x509.Certificate]:
    for cert in certs:
        if cert.subject != cert.issuer:
            continue
        fingerprint = _spki_sha256(cert)
        for product, pinned in trusted.items():
            if fingerprint == pinned:  # public values: no constant-time need
                return product, cert
    raise EvidenceError("the certificate chain does not contain a pinned AMD root key (ARK)")


AMD_KDS_URL = "https://kdsintf.amd.com"


def kds_vcek_url(report: bytes | HardwareReport, *, product: str) -> str:
    """The AMD KDS URL of the VCEK that signed ``report`` (nothing is fetched).

    ``product`` is ``"Milan"``, ``"Genoa"`` or ``"Turin"``. The TCB is the report's
    REPORTED_TCB; Turin uses the first 8 bytes of CHIP_ID and adds ``fmcSPL``. The
    certificate chain for the VCEK is at ``{AMD_KDS_URL}/vcek/v1/{product}/cert_chain``.
    """
    if product not in AMD_ARK_SPKI_SHA256:
        raise EvidenceError(f"unknown AMD product {product!r}")
    parsed = report if isinstance(report, HardwareReport) else parse_snp_report(report)
    if parsed.extra["signing_key"] != "VCEK" or parsed.extra["mask_chip_key"]:
        raise EvidenceError("the report is not signed by a VCEK tied to its CHIP_ID")
    turin = product == "Turin"
    tcb = decode_tcb(int(parsed.extra["reported_tcb_raw"]), turin=turin)
    chip_id = bytes.fromhex(str(parsed.extra["chip_id"]))
    hwid = chip_id[:8] if turin else chip_id
    query = f"fmcSPL={tcb['fmc']}&" if turin else ""
    query += f"blSPL={tcb['bl']}&teeSPL={tcb['tee']}&snpSPL={tcb['snp']}&ucodeSPL={tcb['ucode']}"
    return f"{AMD_KDS_URL}/vcek/v1/{product}/{hwid.hex()}?{query}"


def verify_snp_report(
    report: bytes | HardwareReport,
    *,
    endorsement_key_cert: bytes,
    cert_chain: bytes | Sequence[bytes],
    now: datetime | None = None,
) -> HardwareVerification:
    """Verify a SEV-SNP report's signature and its chain to a pinned AMD ARK.

    ``endorsement_key_cert`` is the VCEK or VLEK certificate (DER or PEM);
    ``cert_chain`` holds the ASK (for a VCEK) or ASVK (for a VLEK) and the ARK, in any
    order: PEM bytes (AMD KDS ``cert_chain``) or a sequence of DER/PEM certificates (for
    example ``[table["ask"], table["ark"]]`` from :func:`parse_snp_cert_table`).
    ``now`` defaults to the wall clock; every certificate must be valid at that time.

    Checks, in order: the ARK's key is pinned and it signed itself; the ARK signed the
    ASK/ASVK; the ASK/ASVK signed the VCEK/VLEK; the report names the same kind of key
    (VCEK or VLEK) as the certificate; the report's ECDSA P-384 signature; the
    certificate's TCB SPLs equal the report's REPORTED_TCB; the VCEK hwID equals CHIP_ID
    (unless MASK_CHIP_KEY). Raises :class:`~cleanroom.errors.EvidenceError` on any failure.
    """
    return _verify_snp_report(
        report,
        endorsement_key_cert=endorsement_key_cert,
        cert_chain=cert_chain,
        now=now,
        trusted_arks=AMD_ARK_SPKI_SHA256,
    )


def _verify_snp_report(
    report: bytes | HardwareReport,
    *,
    endorsement_key_cert: bytes,
    cert_chain: bytes | Sequence[bytes],
    now: datetime | None,
    trusted_arks: dict[str, str],
) -> HardwareVerification:
    parsed = report if isinstance(report, HardwareReport) else parse_snp_report(report)
    if parsed.tee != "sev-snp":
        raise EvidenceError("not a SEV-SNP report")
    at = resolve_now(now)
    ek = _load_certs(as_bytes(endorsement_key_cert, "VCEK/VLEK"), "VCEK/VLEK certificate")[0]
    if isinstance(cert_chain, bytes | bytearray | memoryview):
        chain = _load_certs(bytes(cert_chain), "AMD certificate chain")
    else:
        chain = [
            cert
            for item in cert_chain
            for cert in _load_certs(as_bytes(item, "AMD certificate"), "AMD certificate chain")
        ]

    product, ark = _find_ark(chain, trusted_arks)
    _check_pss_signed(ark, ark, "ARK self-signature")
    _check_validity(ark, at, f"ARK-{product}")

    intermediates = [c for c in chain if c.subject == ek.issuer and c.subject != c.issuer]
    if not intermediates:
        raise EvidenceError(
            f"the chain has no certificate named {_cn(ek.issuer)!r}, the issuer of the VCEK/VLEK"
        )
    ask = intermediates[0]
    expected_issuer = f"SEV-VLEK-{product}" if _cn(ek.subject) == "SEV-VLEK" else f"SEV-{product}"
    if _cn(ask.subject) != expected_issuer:
        raise EvidenceError(
            f"{_cn(ek.subject)!r} must be issued by {expected_issuer!r}, not {_cn(ask.subject)!r}"
        )
    _check_pss_signed(ask, ark, f"{_cn(ask.subject)} certificate")
    _check_ca(ask, f"{_cn(ask.subject)} certificate")
    _check_validity(ask, at, _cn(ask.subject))
    _check_pss_signed(ek, ask, "VCEK/VLEK certificate")
    _check_validity(ek, at, _cn(ek.subject) or "VCEK/VLEK")
    checks = ["ark-pinned", "ark-self-signature", "ask-by-ark", "ek-by-ask", "validity"]

    key_kind = str(parsed.extra["signing_key"])
    expected_cn = _EK_COMMON_NAMES.get(key_kind)
    if expected_cn is None or _cn(ek.subject) != expected_cn:
        raise EvidenceError(
            f"the report is signed by a {key_kind} but the certificate is {_cn(ek.subject)!r}"
        )
    public_key = ek.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP384R1
    ):
        raise EvidenceError("the VCEK/VLEK is not an ECDSA P-384 key")
    signed, r_int, s_int = snp_signature(parsed)
    try:
        public_key.verify(encode_dss_signature(r_int, s_int), signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature as exc:
        raise EvidenceError("the SEV-SNP report signature does not verify") from exc
    checks.append("report-signature")

    info = _ek_info(ek)
    product_name = str(info.get("product_name", product))
    if not product_name.startswith(product):
        raise EvidenceError(f"a {product_name} VCEK/VLEK cannot chain to ARK-{product}")
    reported = decode_tcb(int(parsed.extra["reported_tcb_raw"]), turin=product == "Turin")
    for name in ("bl", "tee", "snp", "ucode", "fmc"):
        if name in reported and info.get(name) != reported[name]:
            raise EvidenceError(
                f"REPORTED_TCB {name}={reported[name]} differs from the {key_kind} "
                f"certificate's {name}SPL={info.get(name)}"
            )
    checks.append("reported-tcb-matches-cert")
    if key_kind == "VCEK" and not parsed.extra["mask_chip_key"]:
        if info.get("hwid") != parsed.extra["chip_id"]:
            raise EvidenceError("the VCEK hwID does not match the report's CHIP_ID")
        checks.append("chip-id-matches-hwid")

    return HardwareVerification(
        report=parsed,
        root=f"AMD ARK-{product}",
        endorsement=key_kind,
        checks=tuple(checks),
        verified_at=at,
    )


__all__ = [
    "AMD_ARK_SPKI_SHA256",
    "CERT_TABLE_GUIDS",
    "endorsement_key_tcb",
    "kds_vcek_url",
    "parse_snp_cert_table",
    "verify_snp_report",
]
