"""The job waits briefly for a broker that is still starting, then names it."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import httpx
import pytest

from cleanroom.enclave.job import _wait_for_broker
from cleanroom.errors import BrokerError


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_broker_that_never_listens_is_named_after_the_wait() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with (
        httpx.Client(base_url=url, timeout=5) as http,
        pytest.raises(BrokerError, match=r"broker of hospital_a at .* refuses connections"),
    ):
        _wait_for_broker(http, "hospital_a", url, patience=1.0)
    assert time.monotonic() - started >= 1.0


def test_a_broker_that_starts_late_is_waited_for() -> None:
    # Bound at once (the port is ours) but listening only a second later: until then
    # every connection is refused, as with a broker that is still starting.
    server = http.server.HTTPServer(
        ("127.0.0.1", 0), http.server.BaseHTTPRequestHandler, bind_and_activate=False
    )
    server.server_bind()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    def start_later() -> None:
        time.sleep(1.0)
        server.server_activate()
        server.serve_forever()

    thread = threading.Thread(target=start_later, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=url, timeout=5) as client:
            _wait_for_broker(client, "hospital_a", url, patience=20.0)  # any answer will do
    finally:
        thread.join(timeout=0.1)
        if thread.is_alive():
            server.shutdown()
        server.server_close()
