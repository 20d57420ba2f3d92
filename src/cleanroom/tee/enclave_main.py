"""Entry point of an enclave process (what ``SimulatedLauncher.launch`` runs).

Usage (inside the TEE)::

    python -I -c <bootstrap> BUNDLE --platform simulated --report-fd FD COMMAND [ARGS]
    python -m cleanroom.tee.enclave_main --platform configfs-tsm COMMAND [ARGS]   (CVM)

The process reports to its launcher with one JSON object per stdout line (``{"event":
...}``). Commands live in :data:`COMMANDS` — ``name -> (add_arguments, run)``; other
packages add theirs there. Built in:

- ``serve-ratls [--host H] [--port P]``: HTTPS with an attested certificate (a health
  endpoint); emits ``{"event": "ready", "host": H, "port": P}``.
- ``attest --verifier-url URL``: gets an EAR token from a verifier for a fresh P-256 key;
  emits ``{"event": "token", "token": ..., "nonce": ..., "tee-pubkey": <JWK>}``.

Modules named in :data:`COMMAND_MODULES` are imported by :func:`main` before parsing;
importing one adds its commands to :data:`COMMANDS` (a module that is absent is skipped).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.errors import CleanroomError, ConfigurationError
from cleanroom.tee._base import Platform

Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[Platform, Any], int]]


def emit(event: str, **fields: Any) -> None:
    """Tell the launcher something: one JSON line on stdout."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def server_ssl_context(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> ssl.SSLContext:
    """A TLS server context for an in-memory key (never written to a file system)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + cert.public_bytes(serialization.Encoding.PEM)
    # ssl can only load keys from a path; an anonymous memory file keeps the key off disk.
    fd = os.memfd_create("cleanroom-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return context


def serve_attested(app: Any, platform: Platform, *, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve the ASGI ``app`` over attested TLS until terminated; emits the ``ready`` event."""
    import uvicorn

    from cleanroom.attestation.ratls import create_attested_certificate

    key, cert = create_attested_certificate(platform)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it (Linux). asyncio only sets TCP_NODELAY on sockets made
    # with proto=IPPROTO_TCP; without it Nagle + delayed ACKs add ~40 ms to each TLS reply.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections queue until uvicorn accepts them
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    config.load()
    config.ssl = server_ssl_context(key, cert)
    server = uvicorn.Server(config)
    emit("ready", host=host, port=sock.getsockname()[1])
    server.run(sockets=[sock])


def _serve_ratls_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)


def _serve_ratls(platform: Platform, args: Any) -> int:
    from fastapi import FastAPI

    app = FastAPI(title="cleanroom enclave", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "tee": platform.tee}

    serve_attested(app, platform, host=args.host, port=args.port)
    return 0


def _attest_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verifier-url", required=True)


def _attest(platform: Platform, args: Any) -> int:
    import httpx
    from joserfc.jwk import ECKey

    from cleanroom.attestation.client import request_ear_token

    key = ECKey.generate_key("P-256", private=True)
    public = key.as_dict(private=False)
    with httpx.Client(base_url=args.verifier_url, timeout=30.0) as client:
        token, nonce = request_ear_token(client, platform, public)
    emit("token", token=token, nonce=nonce, **{"tee-pubkey": public})
    return 0


#: Enclave commands: name -> (add its arguments to a parser, run it with the platform).
COMMANDS: dict[str, Command] = {
    "serve-ratls": (_serve_ratls_args, _serve_ratls),
    "attest": (_attest_args, _attest),
}


#: Modules that add enclave commands to :data:`COMMANDS` when imported (add yours here).
COMMAND_MODULES: tuple[str, ...] = ("cleanroom.enclave.commands", "cleanroom.enclave.scoring")


def load_command_modules() -> None:
    """Import every module of :data:`COMMAND_MODULES` that exists (each registers its commands)."""
    import importlib
    import importlib.util

    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name.rsplit(".", 1)[0]) is None:
            continue
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def make_platform(args: Any) -> Platform:
    """The platform named by ``--platform`` (and its options)."""
    if args.platform == "simulated":
        from cleanroom.tee.simulated import SimulatedPlatform

        if args.report_fd is None:
            raise ConfigurationError("--platform simulated needs --report-fd")
        return SimulatedPlatform(args.report_fd)
    if args.platform == "configfs-tsm":
        from cleanroom.tee.configfs_tsm import ConfigfsTsmPlatform

        return ConfigfsTsmPlatform(root=Path(args.tsm_root))
    from cleanroom.tee.gramine_sgx import GramineSgxPlatform

    return GramineSgxPlatform(root=Path(args.attestation_root))


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, build the platform, run the command; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    load_command_modules()
    parser = argparse.ArgumentParser(prog="cleanroom-enclave")
    parser.add_argument(
        "--platform", choices=("simulated", "configfs-tsm", "gramine-sgx"), required=True
    )
    parser.add_argument("--report-fd", type=int, default=None)
    parser.add_argument("--tsm-root", default="/sys/kernel/config/tsm/report")
    parser.add_argument("--attestation-root", default="/dev/attestation")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, _run) in COMMANDS.items():
        add_arguments(commands.add_parser(name))
    args = parser.parse_args(argv)
    try:
        platform = make_platform(args)
        return COMMANDS[args.command][1](platform, args)
    except CleanroomError as error:
        emit("error", kind=type(error).__name__, message=str(error))
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
