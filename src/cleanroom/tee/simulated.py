"""The simulated TEE: development only, and loud about it.

A :class:`SimulatedLauncher` copies the enclave bundle into a private directory, measures it
(:mod:`cleanroom.tee.bundle`) and starts the enclave as a separate ``python -I`` process. It
holds a platform signing key (ECDSA P-384) certified by a simulation root CA and signs
reports for the enclave over an inherited socket; the enclave (see
:class:`SimulatedPlatform`) sends only ``report_data`` and cannot choose its measurement.

This proves the verification path only. The operator that runs the launcher can read the
enclave's memory, edit its files, and sign any report with the platform key. Evidence is
therefore always ``debug: true`` and the default policy refuses it.

Evidence layout (``Evidence.raw``, canonical CBOR, version 1)::

    {"format": "cleanroom-simulated/1",
     "report": bstr,                 canonical CBOR of the report map below
     "signature": bstr,              ECDSA P-384 / SHA-384 over "report", DER
     "certificates": [bstr, ...]}    DER, platform certificate first (root not needed)

    report = {"version": 1, "tee": "simulated", "measurement": bstr(48),
              "config_id": bstr | null, "report_data": bstr(64), "svn": uint,
              "debug": true, "timestamp": uint (Unix seconds, launcher clock)}
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cleanroom.errors import AttestationError, ConfigurationError, EvidenceError
from cleanroom.tee import _channel
from cleanroom.tee._base import REPORT_DATA_SIZE, Evidence, pad_report_data
from cleanroom.tee.bundle import Bundle, build_bundle, default_lock_file, default_package_dir

_log = logging.getLogger(__name__)

FORMAT = "cleanroom-simulated/1"
REPORT_VERSION = 1
_ROOT_CERT = "simulation-root.pem"
_ROOT_KEY = "simulation-root.key"
_WARNING = "INSECURE simulated TEE in use: %s (the operator can read and forge everything)"

# Runs in the enclave process. Only the bundle may provide `cleanroom`: every other path
# entry that holds a `cleanroom` directory (an editable install, a checkout) is dropped, and
# the import is checked to resolve inside the bundle.
_BOOTSTRAP = """\
import os, sys
bundle = os.path.realpath(sys.argv[1])
sys.path[:] = [bundle] + [p for p in sys.path
                          if p and not os.path.isdir(os.path.join(p, "cleanroom"))]
import cleanroom
if not os.path.realpath(cleanroom.__file__).startswith(bundle + os.sep):
    raise SystemExit("cleanroom was not imported from the enclave bundle")
from cleanroom.tee.enclave_main import main
sys.exit(main(sys.argv[2:]))
"""


@dataclass(frozen=True, slots=True)
class SimulatedReport:
    """The decoded report of simulated evidence (not verified by decoding)."""

    measurement: bytes
    config_id: bytes | None
    report_data: bytes
    svn: int
    debug: bool
    timestamp: int


@dataclass(frozen=True, slots=True)
class DecodedSimulatedEvidence:
    """Simulated evidence split into its signed bytes, signature, certificates and report."""

    report_bytes: bytes
    signature: bytes
    certificates: tuple[x509.Certificate, ...]
    report: SimulatedReport


def decode_simulated_evidence(raw: bytes) -> DecodedSimulatedEvidence:
    """Parse the layout in the module docstring; raises :class:`EvidenceError` if malformed."""
    try:
        outer = cbor2.loads(raw)
        if not isinstance(outer, dict) or outer.get("format") != FORMAT:
            raise EvidenceError("not cleanroom simulated evidence")
        report_bytes, signature = outer["report"], outer["signature"]
        certs_der = outer["certificates"]
        if not isinstance(report_bytes, bytes) or not isinstance(signature, bytes):
            raise EvidenceError("simulated evidence fields have the wrong types")
        if not isinstance(certs_der, list | tuple) or not certs_der:
            raise EvidenceError("simulated evidence carries no certificate")
        certs = tuple(x509.load_der_x509_certificate(c) for c in certs_der)
        report = cbor2.loads(report_bytes)
        if not isinstance(report, dict) or report.get("version") != REPORT_VERSION:
            raise EvidenceError("unsupported simulated report version")
        if report.get("tee") != "simulated":
            raise EvidenceError("simulated report names another TEE")
        measurement, config_id = report["measurement"], report["config_id"]
        report_data, svn = report["report_data"], report["svn"]
        debug, timestamp = report["debug"], report["timestamp"]
    except EvidenceError:
        raise
    except (cbor2.CBORDecodeError, KeyError, TypeError, ValueError, x509.InvalidVersion) as error:
        raise EvidenceError("simulated evidence is malformed") from error
    if not (isinstance(measurement, bytes) and len(measurement) == 48):
        raise EvidenceError("simulated measurement must be 48 bytes")
    if config_id is not None and not isinstance(config_id, bytes):
        raise EvidenceError("simulated config_id must be bytes or null")
    if not (isinstance(report_data, bytes) and len(report_data) == REPORT_DATA_SIZE):
        raise EvidenceError("simulated report_data must be 64 bytes")
    if type(svn) is not int or svn < 0 or type(timestamp) is not int or type(debug) is not bool:
        raise EvidenceError("simulated svn/timestamp/debug have the wrong types")
    return DecodedSimulatedEvidence(
        report_bytes=report_bytes,
        signature=signature,
        certificates=certs,
        report=SimulatedReport(measurement, config_id, report_data, svn, debug, timestamp),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cleanroom (INSECURE simulation)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _root_ca(now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP384R1())
    name = _name("cleanroom simulation root CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA384())
    )
    return key, cert


def _platform_cert(
    root_key: ec.EllipticCurvePrivateKey, root: x509.Certificate, now: dt.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("cleanroom simulated platform"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(root_key, hashes.SHA384())
    )
    return key, cert


def _load_or_create_root(
    workdir: Path | None, now: dt.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    if workdir is None:
        return _root_ca(now)
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = workdir / _ROOT_CERT, workdir / _ROOT_KEY
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigurationError("the simulation root key is not an EC key")
        return key, x509.load_pem_x509_certificate(cert_path.read_bytes())
    key, cert = _root_ca(now)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


class SimulatedLauncher:
    """Starts enclave processes on the simulated TEE and signs their reports.

    ``allow_simulation=True`` is required: the simulation protects nothing from the
    operator. ``workdir`` persists the simulation root CA (``simulation-root.pem`` and a
    0600 ``simulation-root.key``) so verifiers can be configured before launch; without it a
    fresh root is made per launcher. ``package_dir`` and ``lock_file`` default to the
    installed package and the project's ``requirements.lock`` (if present).
    """

    def __init__(
        self,
        *,
        allow_simulation: bool = False,
        workdir: Path | None = None,
        svn: int = 1,
        package_dir: Path | None = None,
        lock_file: Path | None = None,
        python: str | None = None,
    ) -> None:
        if allow_simulation is not True:
            raise ConfigurationError(
                "the simulated TEE protects nothing; pass allow_simulation=True to use it"
            )
        if type(svn) is not int or svn < 0:
            raise ConfigurationError("svn must be a non-negative integer")
        _log.warning(_WARNING, "launcher created")
        now = dt.datetime.now(dt.UTC)
        self._root_key, self._root = _load_or_create_root(workdir, now)
        self._key, self._cert = _platform_cert(self._root_key, self._root, now)
        self._svn = svn
        self._package_dir = Path(package_dir) if package_dir else default_package_dir()
        self._lock_file = (
            lock_file if lock_file is not None else default_lock_file(self._package_dir)
        )
        self._python = python or sys.executable

    def __repr__(self) -> str:
        return f"SimulatedLauncher(svn={self._svn}, package_dir={str(self._package_dir)!r})"

    def __reduce__(self) -> Any:
        raise TypeError("SimulatedLauncher holds signing keys and cannot be pickled")

    @property
    def root_certificate(self) -> x509.Certificate:
        """The simulation root CA certificate a verifier must trust."""
        return self._root

    @property
    def root_certificate_pem(self) -> bytes:
        """:attr:`root_certificate` in PEM."""
        return self._root.public_bytes(serialization.Encoding.PEM)

    def prepare_bundle(self, dest: Path | None = None) -> Bundle:
        """Copy and measure the bundle now (e.g. to configure a verifier before launch)."""
        if dest is None:
            dest = Path(tempfile.mkdtemp(prefix="cleanroom-enclave-"))
        return build_bundle(dest, package_dir=self._package_dir, lock_file=self._lock_file)

    def sign_report(
        self, *, measurement: str, config_id: bytes | None, report_data: bytes
    ) -> Evidence:
        """Sign a report for an enclave whose measurement the launcher computed.

        Public so that the launcher's channel and tests share one code path; the enclave
        itself never calls this (it only sends ``report_data``).
        """
        _log.warning(_WARNING, "signing a simulated report")
        report = {
            "version": REPORT_VERSION,
            "tee": "simulated",
            "measurement": bytes.fromhex(measurement),
            "config_id": config_id,
            "report_data": pad_report_data(report_data),
            "svn": self._svn,
            "debug": True,
            "timestamp": int(dt.datetime.now(dt.UTC).timestamp()),
        }
        report_bytes = cbor2.dumps(report, canonical=True)
        signature = self._key.sign(report_bytes, ec.ECDSA(hashes.SHA384()))
        raw = cbor2.dumps(
            {
                "format": FORMAT,
                "report": report_bytes,
                "signature": signature,
                "certificates": [self._cert.public_bytes(serialization.Encoding.DER)],
            },
            canonical=True,
        )
        return Evidence(tee="simulated", raw=raw)

    def launch(
        self,
        command: Sequence[str],
        *,
        config_id: bytes | None = None,
        bundle: Bundle | None = None,
        env: Mapping[str, str] | None = None,
    ) -> EnclaveProcess:
        """Start ``python -I`` running ``cleanroom.tee.enclave_main`` with ``command``.

        ``config_id`` (e.g. the contract hash) goes into every report, like SNP HOST_DATA or
        TDX MRCONFIGID. The process gets a minimal environment (``PATH``, ``LANG`` and
        ``env``), the bundle directory as its working directory, and only the bundle on its
        import path (the interpreter's site-packages stay available for dependencies).
        """
        _log.warning(_WARNING, "launching an enclave")
        owns_bundle = bundle is None
        if bundle is None:
            bundle = self.prepare_bundle()
        if config_id is not None and (not isinstance(config_id, bytes) or len(config_id) > 64):
            raise ConfigurationError("config_id must be at most 64 bytes")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [
            self._python,
            "-I",
            "-c",
            _BOOTSTRAP,
            str(bundle.path),
            "--platform",
            "simulated",
            "--report-fd",
            str(child.fileno()),
            *command,
        ]
        child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        child_env.update(env or {})
        try:
            process = subprocess.Popen(
                argv,
                cwd=bundle.path,
                env=child_env,
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
            )
        except OSError as error:
            parent.close()
            raise AttestationError(f"cannot start the enclave process: {error}") from error
        finally:
            child.close()
        return EnclaveProcess(self, process, parent, bundle, config_id, owns_bundle=owns_bundle)


class EnclaveProcess:
    """A running simulated enclave. Use as a context manager, or call :meth:`stop`.

    The enclave prints one JSON object per line on stdout (events such as
    ``{"event": "ready", "port": 8443}``); :meth:`wait_event` reads them.
    """

    def __init__(
        self,
        launcher: SimulatedLauncher,
        process: subprocess.Popen[bytes],
        channel: socket.socket,
        bundle: Bundle,
        config_id: bytes | None,
        *,
        owns_bundle: bool,
    ) -> None:
        self.process = process
        self._owns_bundle = owns_bundle
        self.bundle = bundle
        self.config_id = config_id
        self._launcher = launcher
        self._channel = channel
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._server = threading.Thread(target=self._serve, name="sim-tee-reports", daemon=True)
        self._server.start()
        assert process.stdout is not None
        self._reader = threading.Thread(
            target=self._read_events, args=(process.stdout,), name="sim-tee-stdout", daemon=True
        )
        self._reader.start()

    @property
    def measurement(self) -> str:
        """The measurement the launcher computed for this enclave (hex SHA-384)."""
        return self.bundle.measurement

    def _serve(self) -> None:
        with self._channel:
            while True:
                try:
                    request = _channel.recv_frame(self._channel)
                except (AttestationError, OSError):
                    return
                if request is None:
                    return
                reply: dict[str, Any]
                report_data = request.get("report_data")
                if request.get("op") != "report" or not isinstance(report_data, bytes):
                    reply = {"error": "unknown request"}
                elif len(report_data) > REPORT_DATA_SIZE:
                    reply = {"error": "report_data is longer than 64 bytes"}
                else:
                    evidence = self._launcher.sign_report(
                        measurement=self.bundle.measurement,
                        config_id=self.config_id,
                        report_data=report_data,
                    )
                    reply = {"evidence": evidence.raw}
                try:
                    _channel.send_frame(self._channel, reply)
                except OSError:
                    return

    def _read_events(self, stream: IO[bytes]) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._events.put(event)
        self._events.put(None)

    def wait_event(self, name: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """The next stdout event called ``name``; raises if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AttestationError(f"the enclave sent no {name!r} event in {timeout}s")
            try:
                event = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event is None:
                raise AttestationError(
                    f"the enclave exited (status {self.process.wait()}) before {name!r}"
                )
            if event.get("event") == name:
                return event

    def stop(self, *, timeout: float = 10.0) -> int:
        """Terminate the process (kill after ``timeout``); the exit status.

        Deletes the bundle if :meth:`SimulatedLauncher.launch` made it (a bundle passed to
        ``launch`` belongs to the caller).
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._channel.close()
        if self._owns_bundle:
            shutil.rmtree(self.bundle.path, ignore_errors=True)
        return self.process.returncode

    def __enter__(self) -> EnclaveProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SimulatedPlatform:
    """The enclave side of the simulated TEE: asks the launcher for reports over ``fd``.

    Used inside the enclave process (``enclave_main`` builds it from ``--report-fd``).
    """

    def __init__(self, fd: int) -> None:
        _log.warning(_WARNING, "enclave running on the simulated platform")
        self._sock = socket.socket(fileno=fd)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "SimulatedPlatform()"

    @property
    def tee(self) -> str:
        """Always ``"simulated"``."""
        return "simulated"

    def evidence(self, report_data: bytes) -> Evidence:
        """Evidence signed by the launcher binding ``report_data`` (≤ 64 bytes, zero-padded)."""
        padded = pad_report_data(report_data)
        with self._lock:
            _channel.send_frame(self._sock, {"op": "report", "report_data": padded})
            reply = _channel.recv_frame(self._sock)
        if reply is None:
            raise AttestationError("the launcher closed the report channel")
        raw = reply.get("evidence")
        if not isinstance(raw, bytes):
            raise AttestationError(f"the launcher refused the report: {reply.get('error')}")
        return Evidence(tee="simulated", raw=raw)

    def close(self) -> None:
        """Close the report channel."""
        self._sock.close()


def verify_simulated_signature(
    decoded: DecodedSimulatedEvidence,
    trusted_roots: Sequence[x509.Certificate],
    now: dt.datetime,
) -> None:
    """Check the platform certificate chains to one of ``trusted_roots`` and signs the report.

    Raises :class:`EvidenceError` on any failure (the message does not say which root).
    """
    try:
        _verify_simulated_signature(decoded, trusted_roots, now)
    except EvidenceError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:  # lazily parsed fields
        raise EvidenceError("the simulated platform certificate is malformed") from error


def _verify_simulated_signature(
    decoded: DecodedSimulatedEvidence,
    trusted_roots: Sequence[x509.Certificate],
    now: dt.datetime,
) -> None:
    leaf = decoded.certificates[0]
    if not (leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc):
        raise EvidenceError("the simulated platform certificate is not valid now")
    public_key = leaf.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP384R1
    ):
        raise EvidenceError("the simulated platform key is not ECDSA P-384")
    chained = False
    for root in trusted_roots:
        if root.subject != leaf.issuer:
            continue
        if not (root.not_valid_before_utc <= now <= root.not_valid_after_utc):
            continue
        try:
            leaf.verify_directly_issued_by(root)
        except (InvalidSignature, ValueError, TypeError):
            continue
        chained = True
        break
    if not chained:
        raise EvidenceError("the simulated platform certificate does not chain to a trusted root")
    try:
        public_key.verify(decoded.signature, decoded.report_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature as error:
        raise EvidenceError("the simulated report signature does not verify") from error
