"""Verification of Intel DCAP quotes (SGX v3/v4, TDX v4/v5).

Two levels:

* :func:`verify_quote_signatures` — no collateral, pure ``cryptography``: the PCK chain
  in the quote leads to the pinned Intel SGX Root CA and every certificate is valid at
  ``now``; the PCK signed the QE report; the QE report binds the attestation key
  (REPORTDATA = SHA-256(key ‖ auth data)); the attestation key signed the quote. This
  proves the quote came from a genuine Intel platform, but says nothing about its TCB
  level, revocation, or whether the QE itself is current.
* :func:`verify_quote_with_collateral` — the same checks, then Phala's ``dcap-qvl`` with
  the collateral (TCB Info, QE Identity, CRLs, issuer chains) at ``now``: CRLs, TCB Info and
  QE Identity signatures and validity, the TCB level → ``tcb_status`` and advisory IDs.
  ``dcap-qvl`` refuses debug enclaves/TDs and platforms that match no TCB level; both
  come back as :class:`~cleanroom.errors.EvidenceError`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import dcap_qvl
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cleanroom.attestation.hardware._report import (
    HardwareReport,
    HardwareVerification,
    as_bytes,
    resolve_now,
)
from cleanroom.attestation.hardware.quote import (
    INTEL_QE_VENDOR_ID,
    QuoteSignatureData,
    parse_quote_with_signature,
    qe_report_binds_key,
)
from cleanroom.errors import EvidenceError

#: The Intel SGX Root CA (also the root for TDX), from Intel PCS
#: ``https://certificates.trustedservices.intel.com/IntelSGXRootCA.der``.
INTEL_SGX_ROOT_CA_PEM = b"""-----BEGIN CERTIFICATE-----
MIICjzCCAjSgAwIBAgIUImUM1lqdNInzg7SVUr9QGzknBqwwCgYIKoZIzj0EAwIw
aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv
cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ
BgNVBAYTAlVTMB4XDTE4MDUyMTEwNDUxMFoXDTQ5MTIzMTIzNTk1OVowaDEaMBgG
A1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENvcnBvcmF0
aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJBgNVBAYT
AlVTMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC6nEwMDIYZOj/iPWsCzaEKi7
1OiOSLRFhWGjbnBVJfVnkY4u3IjkDYYL0MxO4mqsyYjlBalTVYxFP2sJBK5zlKOB
uzCBuDAfBgNVHSMEGDAWgBQiZQzWWp00ifODtJVSv1AbOScGrDBSBgNVHR8ESzBJ
MEegRaBDhkFodHRwczovL2NlcnRpZmljYXRlcy50cnVzdGVkc2VydmljZXMuaW50
ZWwuY29tL0ludGVsU0dYUm9vdENBLmRlcjAdBgNVHQ4EFgQUImUM1lqdNInzg7SV
Ur9QGzknBqwwDgYDVR0PAQH/BAQDAgEGMBIGA1UdEwEB/wQIMAYBAf8CAQEwCgYI
KoZIzj0EAwIDSQAwRgIhAOW/5QkR+S9CiSDcNoowLuPRLsWGf/Yi7GSX94BgwTwg
AiEA4J0lrHoMs+Xo5o/sX6O9QWxHRAvZUGOdRQ7cvqRXaqI=
-----END CERTIFICATE-----
"""
#: SHA-256 of the DER Intel SGX Root CA certificate above (checked at import).
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

_INTEL_ROOT = x509.load_pem_x509_certificate(INTEL_SGX_ROOT_CA_PEM)
if _INTEL_ROOT.fingerprint(hashes.SHA256()).hex() != INTEL_SGX_ROOT_CA_SHA256:  # pragma: no cover
    raise ImportError("the embedded Intel SGX Root CA does not match its pinned fingerprint")

_ROOT_NAME = "Intel SGX Root CA"
_SGX_EXTENSION_OID = x509.ObjectIdentifier("1.2.840.113741.1.13.1")


def _p256_verify(key: ec.EllipticCurvePublicKey, raw_sig: bytes, data: bytes, what: str) -> None:
    """Verify a raw 64-byte big-endian r‖s ECDSA-P256/SHA-256 signature."""
    if len(raw_sig) != 64:
        raise EvidenceError(f"{what} is not a 64-byte r||s signature")
    der = encode_dss_signature(
        int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big")
    )
    try:
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise EvidenceError(f"{what} does not verify") from exc


def _check_validity(cert: x509.Certificate, now: datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise EvidenceError(f"{what} is not valid at {now.isoformat()}")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _chain_to_root(
    pem: bytes, root: x509.Certificate, now: datetime, what: str
) -> x509.Certificate:
    """Verify ``leaf → intermediate(s) → root`` from a PEM chain; return the leaf.

    The root in ``pem`` (if any) must be byte-identical to ``root``; the trust decision
    uses ``root`` only.
    """
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise EvidenceError(f"{what} is not a valid PEM certificate chain") from exc
    root_der = root.public_bytes(serialization.Encoding.DER)
    chain = [c for c in certs if c.public_bytes(serialization.Encoding.DER) != root_der]
    if any(c.subject == c.issuer for c in chain):
        raise EvidenceError(f"{what} ends at a root other than the {_ROOT_NAME}")
    if not chain:
        raise EvidenceError(f"{what} holds no certificate below the root")
    _check_validity(root, now, _ROOT_NAME)
    issuer = root
    for cert in reversed(chain):
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise EvidenceError(
                f"{what}: a certificate is not signed by its issuer (chain to the {_ROOT_NAME})"
            ) from exc
        _check_validity(cert, now, f"{what} certificate")
        if cert is not chain[0] and not _is_ca(cert):
            raise EvidenceError(f"{what}: an intermediate certificate is not a CA")
        issuer = cert
    return chain[0]


def _verify_signatures(
    sigdata: QuoteSignatureData, report: HardwareReport, root: x509.Certificate, now: datetime
) -> list[str]:
    if bytes.fromhex(str(report.extra["qe_vendor_id"])) != INTEL_QE_VENDOR_ID:
        raise EvidenceError("the quote's QE vendor ID is not Intel's")
    pem = sigdata.pck_chain_pem()
    if pem is None:
        raise EvidenceError(
            f"the quote carries certification data type {sigdata.cert_type}, not a PCK "
            "certificate chain (type 5); it cannot be verified from the quote alone"
        )
    pck = _chain_to_root(pem, root, now, "PCK certificate chain")
    try:
        pck.extensions.get_extension_for_oid(_SGX_EXTENSION_OID)
    except x509.ExtensionNotFound as exc:
        raise EvidenceError("the PCK certificate has no Intel SGX extension") from exc
    pck_key = pck.public_key()
    if not isinstance(pck_key, ec.EllipticCurvePublicKey) or not isinstance(
        pck_key.curve, ec.SECP256R1
    ):
        raise EvidenceError("the PCK certificate key is not ECDSA P-256")
    _p256_verify(pck_key, sigdata.qe_report_signature, sigdata.qe_report, "QE report signature")
    if not qe_report_binds_key(sigdata):
        raise EvidenceError("the QE report does not bind the attestation key")
    try:
        att_key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + sigdata.attest_pub_key
        )
    except ValueError as exc:
        raise EvidenceError("the quote's attestation key is not a P-256 point") from exc
    _p256_verify(att_key, sigdata.signature, sigdata.signed_region, "quote signature")
    return [
        "pck-chain",
        "validity",
        "qe-report-signature",
        "qe-report-binds-key",
        "quote-signature",
    ]


def verify_quote_signatures(quote: bytes, *, now: datetime | None = None) -> HardwareVerification:
    """Verify a DCAP quote's signatures up to the pinned Intel SGX Root CA, without collateral.

    Needs a quote that embeds its PCK chain (certification data type 5, the usual case).
    ``tcb_status`` of the result is ``None``: TCB level, revocation and QE identity are not
    checked (use :func:`verify_quote_with_collateral` for those). Raises
    :class:`~cleanroom.errors.EvidenceError` on any failure.
    """
    return _verify_quote_signatures(quote, now=now, root=_INTEL_ROOT)


def _verify_quote_signatures(
    quote: bytes, *, now: datetime | None, root: x509.Certificate
) -> HardwareVerification:
    at = resolve_now(now)
    report, sigdata = parse_quote_with_signature(quote)
    checks = _verify_signatures(sigdata, report, root, at)
    return HardwareVerification(
        report=report, root=_ROOT_NAME, endorsement="PCK", checks=tuple(checks), verified_at=at
    )


def verify_quote_with_collateral(
    quote: bytes, collateral_json: str | bytes, *, now: datetime | None = None
) -> HardwareVerification:
    """Fully verify a DCAP quote with its collateral and return its TCB status.

    ``collateral_json`` is dcap-qvl's ``QuoteCollateralV3`` JSON (keys ``tcb_info``,
    ``qe_identity`` — the exact signed JSON strings —, ``*_signature`` hex, ``*_issuer_chain``
    PEM, ``root_ca_crl`` and ``pck_crl`` hex DER); :func:`collateral_from_pcs` builds it from
    raw Intel PCS responses. Every item must be valid at ``now`` (the wall clock when
    ``None``). The result's ``tcb_status`` is dcap-qvl's (``UpToDate``,
    ``SWHardeningNeeded``, ``ConfigurationNeeded``, ``ConfigurationAndSWHardeningNeeded``,
    ``OutOfDate``, ``OutOfDateConfigurationNeeded``, ``Revoked``); judging it is the policy's
    job. Raises :class:`~cleanroom.errors.EvidenceError` when anything fails to verify,
    including a platform below every TCB level and (dcap-qvl's rule) a debug enclave/TD.
    """
    return _verify_quote_with_collateral(quote, collateral_json, now=now, root=_INTEL_ROOT)


def _verify_quote_with_collateral(
    quote: bytes, collateral_json: str | bytes, *, now: datetime | None, root: x509.Certificate
) -> HardwareVerification:
    at = resolve_now(now)
    report, sigdata = parse_quote_with_signature(quote)
    checks = _verify_signatures(sigdata, report, root, at)
    text = collateral_json.decode() if isinstance(collateral_json, bytes) else collateral_json
    try:
        collateral = dcap_qvl.QuoteCollateralV3.from_json(text)
    except (ValueError, TypeError) as exc:
        raise EvidenceError("the DCAP collateral JSON is malformed") from exc
    root_der = root.public_bytes(serialization.Encoding.DER)
    try:
        result = dcap_qvl.verify_with_root_ca(report.raw, collateral, root_der, int(at.timestamp()))
    except (ValueError, RuntimeError) as exc:
        # dcap-qvl's messages name the failing check and times only, never key material.
        reason = str(exc).splitlines()[0][:200]
        raise EvidenceError(f"DCAP collateral verification failed: {reason}") from exc
    except BaseException as exc:
        # A Rust panic inside dcap-qvl surfaces as pyo3's PanicException, a BaseException.
        if type(exc).__name__ != "PanicException":
            raise
        raise EvidenceError("DCAP collateral verification failed: dcap-qvl panicked") from exc
    checks += ["crl", "tcb-info", "qe-identity", "tcb-level"]
    return HardwareVerification(
        report=report,
        root=_ROOT_NAME,
        endorsement="PCK",
        checks=tuple(checks),
        verified_at=at,
        tcb_status=str(result.status),
        advisory_ids=tuple(str(a) for a in result.advisory_ids),
    )


def _signed_json_value(body: str, key: str) -> tuple[str, str]:
    """The verbatim text of ``body[key]`` (the signed bytes) and the ``signature`` hex."""
    try:
        parsed = json.loads(body)
        signature = parsed["signature"]
        start = body.index(":", body.index(f'"{key}"')) + 1
        while body[start] in " \t\r\n":
            start += 1
        _, end = json.JSONDecoder().raw_decode(body, start)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise EvidenceError(f"the PCS response has no signed {key!r} value") from exc
    if not isinstance(signature, str):
        raise EvidenceError("the PCS response signature is not a hex string")
    return body[start:end], signature


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def collateral_from_pcs(
    *,
    tcb_info_response: str | bytes,
    qe_identity_response: str | bytes,
    tcb_info_issuer_chain: str | bytes,
    pck_crl: bytes,
    pck_crl_issuer_chain: str | bytes,
    root_ca_crl: bytes,
    qe_identity_issuer_chain: str | bytes | None = None,
) -> str:
    """Build dcap-qvl collateral JSON from raw Intel PCS/PCCS v4 responses.

    ``tcb_info_response`` / ``qe_identity_response`` are the response bodies
    (``{"tcbInfo": {...}, "signature": "..."}``); the signed bytes are taken verbatim
    from the body, never re-serialised. The issuer chains are the PEM response headers
    (``TCB-Info-Issuer-Chain``, ``SGX-PCK-CRL-Issuer-Chain``; the QE Identity chain defaults
    to the TCB Info one, as Intel uses one TCB-signing key). The CRLs are DER.
    """
    tcb_info, tcb_sig = _signed_json_value(_text(tcb_info_response), "tcbInfo")
    qe_identity, qe_sig = _signed_json_value(_text(qe_identity_response), "enclaveIdentity")
    tcb_chain = _text(tcb_info_issuer_chain)
    collateral: dict[str, Any] = {
        "pck_crl_issuer_chain": _text(pck_crl_issuer_chain),
        "root_ca_crl": as_bytes(root_ca_crl, "root CA CRL").hex(),
        "pck_crl": as_bytes(pck_crl, "PCK CRL").hex(),
        "tcb_info_issuer_chain": tcb_chain,
        "tcb_info": tcb_info,
        "tcb_info_signature": tcb_sig,
        "qe_identity_issuer_chain": _text(qe_identity_issuer_chain or tcb_chain),
        "qe_identity": qe_identity,
        "qe_identity_signature": qe_sig,
    }
    return json.dumps(collateral)


def verify_pcs_signed_json(
    response: str | bytes, *, key: str, issuer_chain: str | bytes, now: datetime | None = None
) -> dict[str, Any]:
    """Verify one signed PCS document (TCB Info: ``key="tcbInfo"``; QE Identity:
    ``key="enclaveIdentity"``) against its issuer chain to the Intel root; return its value.

    Checks the ECDSA-P256 signature over the verbatim value bytes and the chain's validity
    at ``now``, not the document's own ``issueDate``/``nextUpdate`` (returned for the caller).
    """
    at = resolve_now(now)
    value, signature = _signed_json_value(_text(response), key)
    signer = _chain_to_root(_text(issuer_chain).encode(), _INTEL_ROOT, at, "TCB signing chain")
    signer_key = signer.public_key()
    if not isinstance(signer_key, ec.EllipticCurvePublicKey):
        raise EvidenceError("the TCB signing key is not an EC key")
    try:
        raw_sig = bytes.fromhex(signature)
    except ValueError as exc:
        raise EvidenceError("the PCS response signature is not hex") from exc
    _p256_verify(signer_key, raw_sig, value.encode(), f"{key} signature")
    result = json.loads(value)
    if not isinstance(result, dict):
        raise EvidenceError(f"{key} is not a JSON object")
    return result


__all__ = [
    "INTEL_SGX_ROOT_CA_PEM",
    "INTEL_SGX_ROOT_CA_SHA256",
    "collateral_from_pcs",
    "verify_pcs_signed_json",
    "verify_quote_signatures",
    "verify_quote_with_collateral",
]
