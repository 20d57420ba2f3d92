"""The verifier CLI as a real process, and enclave processes that ask it for EAR tokens."""

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cleanroom.attestation import verify_ear_token
from cleanroom.tee import SimulatedLauncher
from cleanroom.tee.bundle import Bundle, default_lock_file, default_package_dir

ISSUER = "integration-verifier"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def sim_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim")


@pytest.fixture(scope="module")
def launcher(sim_workdir: Path) -> SimulatedLauncher:
    return SimulatedLauncher(allow_simulation=True, workdir=sim_workdir)


@pytest.fixture(scope="module")
def bundle(launcher: SimulatedLauncher) -> Iterator[Bundle]:
    prepared = launcher.prepare_bundle()
    try:
        yield prepared
    finally:
        shutil.rmtree(prepared.path)


@pytest.fixture(scope="module")
def verifier(
    launcher: SimulatedLauncher, bundle: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("verifier")
    root = workdir / "simulation-root.pem"
    root.write_bytes(launcher.root_certificate_pem)
    port = _free_port()
    cli = str(Path(sys.executable).with_name("cleanroom"))
    log = (workdir / "verifier.log").open("wb")
    process = subprocess.Popen(
        [cli, "verifier", "serve", "--port", str(port), "--issuer", ISSUER,
         "--insecure-simulation", "--simulation-root", str(root),
         "--measurement", bundle.measurement],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/.well-known/jwks.json", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((workdir / "verifier.log").read_text()) from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def test_an_enclave_gets_a_warning_ear_token(
    launcher: SimulatedLauncher, bundle: Bundle, verifier: str
) -> None:
    jwks = httpx.get(f"{verifier}/.well-known/jwks.json").json()
    with launcher.launch(["attest", "--verifier-url", verifier], bundle=bundle) as enclave:
        event = enclave.wait_event("token", timeout=60)
        assert enclave.process.wait(timeout=30) == 0
    ear = verify_ear_token(event["token"], jwks, issuer=ISSUER, nonce=event["nonce"])
    assert ear.status == "warning"
    assert ear.annotated_evidence["measurement"] == bundle.measurement
    assert ear.annotated_evidence["tee-pubkey"] == event["tee-pubkey"]
    assert ear.annotated_evidence["debug"] is True


def test_one_changed_byte_of_enclave_code_is_refused(
    sim_workdir: Path, verifier: str, tmp_path: Path
) -> None:
    package = tmp_path / "src" / "cleanroom"
    shutil.copytree(default_package_dir(), package, ignore=shutil.ignore_patterns("__pycache__"))
    with (package / "__init__.py").open("ab") as out:
        out.write(b"\n")
    # Same simulation root (shared workdir), same platform: only the code differs.
    tampered = SimulatedLauncher(
        allow_simulation=True,
        workdir=sim_workdir,
        package_dir=package,
        lock_file=default_lock_file(),
    )
    with tampered.launch(["attest", "--verifier-url", verifier]) as enclave:
        event = enclave.wait_event("error", timeout=60)
        assert enclave.process.wait(timeout=30) != 0
    assert event["kind"] == "PolicyViolation"
    assert event["message"].startswith("measurement")
