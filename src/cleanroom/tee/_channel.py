"""Length-prefixed CBOR frames over the inherited launcher <-> enclave socket.

Frame: 4-byte big-endian length, then that many bytes of CBOR (one map). Requests are
``{"op": "report", "report_data": bstr}``; replies are ``{"evidence": bstr}`` or
``{"error": tstr}``.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import cbor2

from cleanroom.errors import AttestationError

MAX_FRAME = 64 * 1024
_HEADER = struct.Struct(">I")


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None if not chunks else bytes(chunks)
        chunks.extend(chunk)
    return bytes(chunks)


def send_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    """Send one CBOR map as a frame."""
    payload = cbor2.dumps(message, canonical=True)
    if len(payload) > MAX_FRAME:
        raise AttestationError("report channel frame too large")
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def recv_frame(sock: socket.socket) -> dict[str, Any] | None:
    """Receive one frame; ``None`` when the peer closed the channel cleanly."""
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    if len(header) != _HEADER.size:
        raise AttestationError("report channel closed mid-frame")
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise AttestationError("report channel frame too large")
    payload = _recv_exact(sock, size)
    if payload is None or len(payload) != size:
        raise AttestationError("report channel closed mid-frame")
    try:
        message = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError) as error:
        raise AttestationError("report channel frame is not CBOR") from error
    if not isinstance(message, dict):
        raise AttestationError("report channel frame is not a map")
    return message
