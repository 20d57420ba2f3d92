"""The party's own decision log: every attest and release decision, one JSON object per line.

File: ``<workdir>/broker/<party>/decisions.jsonl`` by default (mode 0600). Each line is the
compact JSON of::

    {"seq": 1, "time": "2026-12-03T14:00:00Z", "party": "hospital_a",
     "action": "attest" | "resource",
     "decision": "attested" | "released" | "refused",
     "reason": "ok" | <rule>, "detail": "<one sentence, never key material>",
     "resource": "hospital_a/cek/CEK_hospital_a" | null,
     "contract": "<config id / contract hash>" | null,
     "tee": ..., "measurement": ..., "simulated": bool, "insecure_simulation": bool,
     "receipt": "<receipt id>" | null, "client": "<peer address>" | null,
     "prev": "<hex SHA-256 of the previous line's bytes, or 64 zeros for the first>"}

``prev`` chains the lines: :func:`verify_decision_log` detects an edited, dropped or
reordered line (not a truncated tail; the party keeps its own copy or ships lines to its
own log store for that). Key bytes, nonces, tokens and session ids are never written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cleanroom.errors import BrokerError, ConfigurationError

GENESIS = "0" * 64

#: The fields of every line, in order.
FIELDS: tuple[str, ...] = (
    "seq",
    "time",
    "party",
    "action",
    "decision",
    "reason",
    "detail",
    "resource",
    "contract",
    "tee",
    "measurement",
    "simulated",
    "insecure_simulation",
    "receipt",
    "client",
    "prev",
)


def _time(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class DecisionLog:
    """Append-only JSON Lines decision log of one party's broker (thread-safe).

    Opening an existing file reads it once to continue its sequence and hash chain; a file
    whose chain does not verify is refused (:class:`BrokerError`) rather than extended.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        try:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigurationError(
                f"cannot create the decision log directory {self._path.parent}"
            ) from error
        self._lock = threading.Lock()
        self._seq, self._prev = 0, GENESIS
        if self._path.exists():
            self._seq, self._prev = _check(self._path)

    @property
    def path(self) -> Path:
        """Where the log is written."""
        return self._path

    def __repr__(self) -> str:
        return f"DecisionLog({str(self._path)!r})"

    def append(self, *, now: dt.datetime | None = None, **fields: Any) -> dict[str, Any]:
        """Append one decision (fields from :data:`FIELDS`; missing ones are ``null``)."""
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown decision log fields: {sorted(unknown)}")
        with self._lock:
            entry = {name: fields.get(name) for name in FIELDS}
            entry["seq"] = self._seq + 1
            entry["time"] = _time(now or dt.datetime.now(dt.UTC))
            entry["prev"] = self._prev
            line = json.dumps(entry, separators=(",", ":"), sort_keys=False).encode() + b"\n"
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._seq += 1
            self._prev = hashlib.sha256(line).hexdigest()
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, after checking the chain."""
        with self._lock:
            _check(self._path)
            return list(_read(self._path))


def _read(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open("rb") as stream:
        for line in stream:
            yield json.loads(line)


def _check(path: Path) -> tuple[int, str]:
    seq, prev = 0, GENESIS
    with path.open("rb") as stream:
        for number, line in enumerate(stream, start=1):
            try:
                entry = json.loads(line)
            except ValueError:
                raise BrokerError(f"decision log line {number} is not JSON") from None
            if not line.endswith(b"\n") or not isinstance(entry, dict):
                raise BrokerError(f"decision log line {number} is malformed")
            if entry.get("seq") != seq + 1 or entry.get("prev") != prev:
                raise BrokerError(f"decision log line {number} breaks the hash chain")
            seq, prev = seq + 1, hashlib.sha256(line).hexdigest()
    return seq, prev


def verify_decision_log(path: str | os.PathLike[str]) -> int:
    """Check a decision log's hash chain; the number of entries, or :class:`BrokerError`."""
    return _check(Path(path))[0]


__all__ = ["FIELDS", "GENESIS", "DecisionLog", "verify_decision_log"]
