"""The decision log's hash chain, and KBS sessions' single-use nonces and timeouts."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cleanroom.broker import DecisionLog, verify_decision_log
from cleanroom.broker.sessions import SessionStore
from cleanroom.errors import BrokerError, ConfigurationError

T0 = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def test_log_appends_chained_private_lines(tmp_path: Path) -> None:
    path = tmp_path / "broker" / "a" / "decisions.jsonl"
    log = DecisionLog(path)
    log.append(action="attest", decision="attested", reason="ok", now=T0)
    log.append(action="resource", decision="refused", reason="in-force", resource="a/cek/K")
    assert path.stat().st_mode & 0o777 == 0o600
    entries = log.entries()
    assert [e["seq"] for e in entries] == [1, 2]
    assert entries[0]["time"] == "2026-12-03T12:00:00Z"
    assert entries[0]["prev"] == "0" * 64
    assert verify_decision_log(path) == 2
    # Reopening continues the chain.
    DecisionLog(path).append(action="resource", decision="released", reason="ok")
    assert verify_decision_log(path) == 3
    with pytest.raises(ValueError, match="unknown"):
        log.append(key_bytes="00")


def test_log_detects_edits_drops_and_reordering(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path)
    for reason in ("ok", "nonce", "measurement"):
        log.append(action="attest", decision="refused", reason=reason)
    lines = path.read_bytes().splitlines(keepends=True)
    edited = json.loads(lines[1])
    edited["decision"] = "released"
    for bad in (
        [lines[0], json.dumps(edited, separators=(",", ":")).encode() + b"\n", lines[2]],
        [lines[0], lines[2]],
        [lines[1], lines[0], lines[2]],
    ):
        path.write_bytes(b"".join(bad))
        with pytest.raises(BrokerError):
            verify_decision_log(path)
        with pytest.raises(BrokerError):
            DecisionLog(path)  # never extends a broken log


def test_session_nonce_is_single_use_and_sessions_expire() -> None:
    store = SessionStore(ttl=dt.timedelta(minutes=5))
    session = store.start("simulated", now=T0)
    assert len(session.id) >= 40
    assert session.nonce is not None
    nonce = session.nonce
    assert store.get(session.id, now=T0) is session
    assert store.take_nonce(session) == nonce
    assert store.take_nonce(session) is None
    assert store.get(session.id, now=T0 + dt.timedelta(minutes=5)) is None
    assert store.get(session.id, now=T0) is None  # gone for good
    assert store.get(None, now=T0) is None
    assert "nonce" not in repr(session)
    assert session.id not in repr(session)


def test_session_store_is_bounded_and_validates() -> None:
    store = SessionStore(max_sessions=3)
    sessions = [store.start("tdx", now=T0) for _ in range(5)]
    assert len(store) == 3
    assert store.get(sessions[0].id, now=T0) is None
    assert store.get(sessions[4].id, now=T0) is sessions[4]
    assert len({s.nonce for s in sessions}) == 5
    with pytest.raises(ConfigurationError):
        SessionStore(ttl=dt.timedelta(0))


def test_veto_file_round_trip_and_fail_closed(tmp_path: Path) -> None:
    from cleanroom.broker import add_veto, read_vetoes
    from cleanroom.errors import PolicyViolation

    path = tmp_path / "broker" / "a" / "vetoes.txt"
    assert read_vetoes(path) == frozenset()
    add_veto(path, "ab" * 32)
    add_veto(path, "ab" * 32)
    add_veto(path, "cd" * 32)
    assert read_vetoes(path) == {"ab" * 32, "cd" * 32}
    assert path.read_text().count("\n") == 2
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigurationError):
        add_veto(path, "AB" * 32)
    path.write_text("# comment\n" + "ab" * 32 + "  # why\n\n")
    assert read_vetoes(path) == {"ab" * 32}
    path.write_text("not a hash\n")
    with pytest.raises(PolicyViolation) as refused:
        read_vetoes(path)
    assert refused.value.rule == "in-force"
