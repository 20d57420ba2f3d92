"""A real enclave process (simulated TEE) serving HTTPS with an attested certificate."""

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.attestation import (
    RATLS_OID,
    AttestationPolicy,
    attested_httpx_client,
    attested_httpx_client_with_claims,
    attested_ssl_context,
    fetch_server_certificate,
)
from cleanroom.errors import EvidenceError, PolicyViolation
from cleanroom.tee import EnclaveProcess, SimulatedLauncher

CONFIG_ID = bytes.fromhex("ab" * 32)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> SimulatedLauncher:
    return SimulatedLauncher(allow_simulation=True, workdir=tmp_path_factory.mktemp("sim"))


@pytest.fixture(scope="module")
def enclave(launcher: SimulatedLauncher) -> Iterator[tuple[EnclaveProcess, str]]:
    process = launcher.launch(["serve-ratls", "--host", "127.0.0.1"], config_id=CONFIG_ID)
    try:
        ready = process.wait_event("ready", timeout=60)
        yield process, f"https://127.0.0.1:{ready['port']}"
    finally:
        process.stop()
    assert process.process.poll() is not None
    assert not process.bundle.path.exists()


def _good_policy(measurement: str, **overrides: Any) -> AttestationPolicy:
    settings: dict[str, Any] = {
        "allow_simulation": True,
        "allowed_measurements": {measurement},
        "required_config_id": CONFIG_ID.hex(),
        "max_evidence_age": dt.timedelta(minutes=10),
    }
    settings.update(overrides)
    return AttestationPolicy(**settings)


def test_a_correct_policy_connects(
    enclave: tuple[EnclaveProcess, str], launcher: SimulatedLauncher
) -> None:
    process, url = enclave
    client, claims = attested_httpx_client_with_claims(
        url, _good_policy(process.measurement), trusted_roots=[launcher.root_certificate]
    )
    with client:
        reply = client.get("/health")
    assert reply.json() == {"status": "ok", "tee": "simulated"}
    assert claims.measurement == process.measurement
    assert claims.config_id == CONFIG_ID.hex()
    assert claims.simulated
    assert claims.debug


def test_a_changed_measurement_is_refused(
    enclave: tuple[EnclaveProcess, str], launcher: SimulatedLauncher
) -> None:
    process, url = enclave
    wrong = process.measurement[:-2] + ("00" if process.measurement[-2:] != "00" else "01")
    with pytest.raises(PolicyViolation) as caught:
        attested_httpx_client(url, _good_policy(wrong), trusted_roots=[launcher.root_certificate])
    assert caught.value.rule == "measurement"


def test_a_policy_forbidding_debug_and_simulation_is_refused(
    enclave: tuple[EnclaveProcess, str], launcher: SimulatedLauncher
) -> None:
    process, url = enclave
    production = AttestationPolicy(
        allowed_tees={"sev-snp", "tdx", "sgx"}, allowed_measurements={process.measurement}
    )
    for policy in (production, AttestationPolicy()):
        with pytest.raises(PolicyViolation) as caught:
            attested_httpx_client(url, policy, trusted_roots=[launcher.root_certificate])
        assert caught.value.rule == "simulation"


def test_an_untrusted_simulation_root_is_refused(enclave: tuple[EnclaveProcess, str]) -> None:
    process, url = enclave
    stranger = SimulatedLauncher(allow_simulation=True)
    with pytest.raises(EvidenceError):
        attested_httpx_client(
            url, _good_policy(process.measurement), trusted_roots=[stranger.root_certificate]
        )


def _forged(cert: x509.Certificate) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Another key in a self-signed certificate carrying the enclave's genuine evidence."""
    key = ec.generate_private_key(ec.SECP384R1())
    evidence = cert.extensions.get_extension_for_oid(RATLS_OID).value
    now = dt.datetime.now(dt.UTC)
    forged = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.subject)
        .public_key(key.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(evidence, critical=False)
        .sign(key, hashes.SHA384())
    )
    return key, forged


def test_a_certificate_whose_key_does_not_match_its_evidence_is_refused(
    enclave: tuple[EnclaveProcess, str], launcher: SimulatedLauncher, tmp_path: Path
) -> None:
    process, url = enclave
    port = int(url.rsplit(":", 1)[1])
    genuine = fetch_server_certificate("127.0.0.1", port)
    key, forged = _forged(genuine)
    policy = _good_policy(process.measurement)
    roots = [launcher.root_certificate]
    with pytest.raises(PolicyViolation) as caught:
        attested_ssl_context(forged, policy, trusted_roots=roots)
    assert caught.value.rule == "tls-key"

    # An impostor server presenting the forged certificate: the client refuses it too.
    pem = tmp_path / "impostor.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + forged.public_bytes(serialization.Encoding.PEM)
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(pem)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)

    def serve_once() -> None:
        try:
            conn, _ = listener.accept()
            with server_context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    impostor_url = f"https://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with pytest.raises(PolicyViolation) as caught:
            attested_httpx_client(impostor_url, policy, trusted_roots=roots)
        assert caught.value.rule == "tls-key"
    finally:
        thread.join(timeout=20)
        listener.close()

    # And a context pinned to the genuine certificate does not accept the impostor's.
    pinned = attested_ssl_context(genuine, policy, trusted_roots=roots)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)
    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    try:
        with httpx.Client(verify=pinned) as client, pytest.raises(httpx.ConnectError):
            client.get(f"https://127.0.0.1:{listener.getsockname()[1]}/health")
    finally:
        thread.join(timeout=20)
        listener.close()
