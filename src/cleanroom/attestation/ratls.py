"""Attested TLS: a self-signed certificate that carries the enclave's evidence.

Extension ``2.23.133.5.4.9`` (TCG DICE tagged evidence, as the CCC "interoperable RA-TLS"
format and Gramine use it), non-critical, value::

    CBOR tag 60000 ( [ bstr evidence, bstr claims ] )            (+ bstr aux, if any)

    claims = CBOR map {"pubkey-hash": bstr(CBOR [7, SHA-384(DER SubjectPublicKeyInfo)]),
                       "tee": tstr}
    REPORTDATA = SHA-256(claims) || 32 zero bytes

``7`` is sha-384 in the IANA Named Information hash registry (1 = sha-256 and 8 = sha-512
are accepted too). ``evidence`` is :attr:`Evidence.raw`; ``tee`` names its format. The
client checks, in order: the certificate is validly self-signed; ``pubkey-hash`` equals the
hash of the certificate's own key; the evidence verifies against the policy with
REPORTDATA = SHA-256(claims); then it pins exactly that certificate.

The binding proves the key was made where the evidence was made; it carries no client
nonce, so freshness comes from the evidence timestamp (``max_evidence_age``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import cbor2
import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cleanroom.attestation.claims import VerifiedClaims
from cleanroom.attestation.policy import AttestationPolicy
from cleanroom.attestation.verify import verify_bound
from cleanroom.errors import AttestationError, EvidenceError, PolicyViolation
from cleanroom.tee._base import Evidence, Platform

RATLS_OID = x509.ObjectIdentifier("2.23.133.5.4.9")
CBOR_TAG = 60000
_HASHES = {1: hashlib.sha256, 7: hashlib.sha384, 8: hashlib.sha512}


def _spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def ratls_claims(public_key: ec.EllipticCurvePublicKey, tee: str) -> bytes:
    """The CBOR claims buffer for ``public_key`` (see the module docstring)."""
    pubkey_hash = cbor2.dumps([7, hashlib.sha384(_spki(public_key)).digest()])
    return cbor2.dumps({"pubkey-hash": pubkey_hash, "tee": tee}, canonical=True)


def ratls_report_data(claims: bytes) -> bytes:
    """REPORTDATA for an RA-TLS claims buffer: SHA-256(claims) zero-padded to 64 bytes."""
    return hashlib.sha256(claims).digest().ljust(64, b"\0")


def create_attested_certificate(
    platform: Platform,
    *,
    common_name: str = "cleanroom enclave",
    validity: dt.timedelta = dt.timedelta(days=1),
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Make a TLS key (P-384) inside the enclave and a self-signed certificate with evidence."""
    key = ec.generate_private_key(ec.SECP384R1())
    claims = ratls_claims(key.public_key(), platform.tee)
    evidence = platform.evidence(ratls_report_data(claims))
    items: list[bytes] = [evidence.raw, claims]
    if evidence.aux is not None:
        items.append(evidence.aux)
    value = cbor2.dumps(cbor2.CBORTag(CBOR_TAG, items))
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.UnrecognizedExtension(RATLS_OID, value), critical=False)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def _load_cert(cert: x509.Certificate | bytes | str) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    data = cert.encode() if isinstance(cert, str) else cert
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except (ValueError, x509.InvalidVersion) as error:
        raise EvidenceError("not an X.509 certificate") from error


def _parse_extension(cert: x509.Certificate) -> tuple[Evidence, bytes]:
    try:
        ext = cert.extensions.get_extension_for_oid(RATLS_OID)
    except x509.ExtensionNotFound as error:
        raise EvidenceError("the certificate carries no attestation evidence") from error
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise EvidenceError("unexpected RA-TLS extension type")
    try:
        tagged = cbor2.loads(value.value)
        if not isinstance(tagged, cbor2.CBORTag) or tagged.tag != CBOR_TAG:
            raise EvidenceError("the RA-TLS extension is not CBOR tag 60000")
        items = tagged.value
        if not isinstance(items, list | tuple) or len(items) not in (2, 3):
            raise EvidenceError("the RA-TLS extension must hold [evidence, claims(, aux)]")
        if not all(isinstance(item, bytes) for item in items):
            raise EvidenceError("RA-TLS items must be byte strings")
        claims_map = cbor2.loads(items[1])
    except EvidenceError:
        raise
    except (cbor2.CBORDecodeError, ValueError, TypeError) as error:
        raise EvidenceError("the RA-TLS extension is not valid CBOR") from error
    if not isinstance(claims_map, dict) or not isinstance(claims_map.get("tee"), str):
        raise EvidenceError("the RA-TLS claims name no TEE")
    aux = items[2] if len(items) == 3 else None
    return Evidence(tee=claims_map["tee"], raw=items[0], aux=aux), items[1]


def _check_pubkey_hash(cert: x509.Certificate, claims: bytes) -> None:
    try:
        claims_map = cbor2.loads(claims)
        alg, digest = cbor2.loads(claims_map["pubkey-hash"])
    except (cbor2.CBORDecodeError, KeyError, TypeError, ValueError) as error:
        raise EvidenceError("the RA-TLS claims carry no valid pubkey-hash") from error
    hash_fn = _HASHES.get(alg) if isinstance(alg, int) else None
    if hash_fn is None or not isinstance(digest, bytes):
        raise EvidenceError("the RA-TLS pubkey-hash uses an unknown algorithm")
    actual = hash_fn(_spki(cert.public_key())).digest()
    if not hmac.compare_digest(actual, digest):
        raise PolicyViolation(
            "tls-key", "the certificate's key is not the key bound by its evidence"
        )


def verify_attested_certificate(
    cert: x509.Certificate | bytes | str,
    policy: AttestationPolicy,
    *,
    trusted_roots: Sequence[x509.Certificate] = (),
    collateral: str | bytes | None = None,
    amd_cert_chain: bytes | Sequence[bytes] | None = None,
    now: dt.datetime | None = None,
) -> VerifiedClaims:
    """Verify an RA-TLS certificate: self-signature and validity, key binding, then evidence.

    Raises :class:`EvidenceError` or :class:`PolicyViolation` (rule ``tls-key`` when the
    certificate key differs from the key the evidence binds). ``collateral`` /
    ``amd_cert_chain`` are passed to the hardware verifiers as in
    :func:`~cleanroom.attestation.verify`.
    """
    certificate = _load_cert(cert)
    try:
        certificate.verify_directly_issued_by(certificate)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise EvidenceError("the RA-TLS certificate is not validly self-signed") from error
    when = now or dt.datetime.now(dt.UTC)
    if not certificate.not_valid_before_utc <= when <= certificate.not_valid_after_utc:
        raise EvidenceError("the RA-TLS certificate is outside its validity period")
    try:
        evidence, claims = _parse_extension(certificate)
        _check_pubkey_hash(certificate, claims)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        if isinstance(error, EvidenceError):
            raise
        raise EvidenceError("the RA-TLS certificate is malformed") from error
    return verify_bound(
        evidence,
        policy,
        report_data=ratls_report_data(claims),
        trusted_roots=trusted_roots,
        collateral=collateral,
        amd_cert_chain=amd_cert_chain,
        now=now,
    )


def pinned_ssl_context(cert: x509.Certificate) -> ssl.SSLContext:
    """A client context that trusts exactly ``cert`` (its key) and nothing else.

    Hostnames are not checked: the identity is the attested key, not a name.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=cert.public_bytes(serialization.Encoding.DER))
    return context


def attested_ssl_context(
    cert: x509.Certificate | bytes | str,
    policy: AttestationPolicy,
    *,
    trusted_roots: Sequence[x509.Certificate] = (),
    collateral: str | bytes | None = None,
    amd_cert_chain: bytes | Sequence[bytes] | None = None,
    now: dt.datetime | None = None,
) -> ssl.SSLContext:
    """Verify ``cert`` (:func:`verify_attested_certificate`), then pin a client context to it."""
    certificate = _load_cert(cert)
    verify_attested_certificate(
        certificate,
        policy,
        trusted_roots=trusted_roots,
        collateral=collateral,
        amd_cert_chain=amd_cert_chain,
        now=now,
    )
    return pinned_ssl_context(certificate)


def fetch_server_certificate(host: str, port: int, *, timeout: float = 10.0) -> x509.Certificate:
    """The certificate a TLS server presents, fetched *without* trusting it.

    Only to inspect the certificate before pinning it; no application data is sent on this
    connection, and nothing it returns is trusted until attestation verifies it.
    """
    try:
        pem = ssl.get_server_certificate((host, port), timeout=timeout)
    except OSError as error:
        raise AttestationError(f"cannot fetch the certificate of {host}:{port}: {error}") from error
    return x509.load_pem_x509_certificate(pem.encode())


def attested_httpx_client(
    url: str,
    policy: AttestationPolicy,
    *,
    trusted_roots: Sequence[x509.Certificate] = (),
    collateral: str | bytes | None = None,
    amd_cert_chain: bytes | Sequence[bytes] | None = None,
    timeout: float = 10.0,
    now: dt.datetime | None = None,
) -> httpx.Client:
    """An httpx client for ``url`` (https) pinned to the attested certificate the server shows.

    Fetches the server certificate, verifies its evidence against ``policy`` and its key
    binding, and returns a client that only completes a handshake with that certificate's
    key. Use :func:`attested_httpx_client_with_claims` to get the verified claims too.
    """
    return attested_httpx_client_with_claims(
        url,
        policy,
        trusted_roots=trusted_roots,
        collateral=collateral,
        amd_cert_chain=amd_cert_chain,
        timeout=timeout,
        now=now,
    )[0]


def attested_httpx_client_with_claims(
    url: str,
    policy: AttestationPolicy,
    *,
    trusted_roots: Sequence[x509.Certificate] = (),
    collateral: str | bytes | None = None,
    amd_cert_chain: bytes | Sequence[bytes] | None = None,
    timeout: float = 10.0,
    now: dt.datetime | None = None,
) -> tuple[httpx.Client, VerifiedClaims]:
    """As :func:`attested_httpx_client`, returning ``(client, verified claims)``."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise AttestationError("attested TLS needs an https:// URL")
    cert = fetch_server_certificate(parts.hostname, parts.port or 443, timeout=timeout)
    claims = verify_attested_certificate(
        cert,
        policy,
        trusted_roots=trusted_roots,
        collateral=collateral,
        amd_cert_chain=amd_cert_chain,
        now=now,
    )
    client = httpx.Client(base_url=url, verify=pinned_ssl_context(cert), timeout=timeout)
    return client, claims
