"""Start the demo's servers (verifier, one key broker per party) as real processes on loopback.

Each server is the ordinary ``cleanroom … serve`` command in its own process, as each party
would run it on its own machine; the demo only picks free loopback ports and waits until
every server answers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import httpx

from cleanroom.errors import ConfigurationError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """One ``cleanroom`` server running as a child process."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: BinaryIO = field(repr=False)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after ``timeout``)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self.log_file.close()


def start_server(
    name: str,
    args: Sequence[str],
    *,
    port: int,
    health_path: str,
    log_dir: Path,
    timeout: float = 60.0,
) -> ServerProcess:
    """Run ``cleanroom <args> --port PORT`` and wait until ``GET health_path`` answers."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = log_path.open("wb")
    argv = [
        sys.executable,
        "-m",
        "cleanroom.cli",
        *args,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    server = ServerProcess(name, f"http://127.0.0.1:{port}", process, log_path, log)
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while True:
            if process.poll() is not None:
                server.stop()
                tail = log_path.read_text(errors="replace")[-2000:]
                raise ConfigurationError(f"{name} exited with {process.returncode}:\n{tail}")
            with contextlib.suppress(httpx.TransportError):
                client.get(health_path)
                return server
            if time.monotonic() > deadline:
                server.stop()
                raise ConfigurationError(f"{name} did not answer within {timeout:.0f} s")
            time.sleep(0.1)
