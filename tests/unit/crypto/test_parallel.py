"""CellWorkers: the same cells as CellCipher, from forked worker processes."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal

import pytest

from cleanroom.crypto import CellCipher, CellWorkers, ColumnEncryptionKey, EncryptionType, parallel
from cleanroom.errors import CryptoError, DecryptionError

KEY = ColumnEncryptionKey(bytes(range(32)))
OTHER = ColumnEncryptionKey(bytes(range(1, 33)))
needs_fork = pytest.mark.skipif(not parallel.fork_available(), reason="no fork on this platform")

# Mixed lengths (several length groups per chunk), more than one chunk per worker.
VALUES = [bytes([i % 251]) * (i % 37) for i in range(3 * parallel.MIN_PARALLEL + 5)]


def _children() -> set[int]:
    return {p.pid for p in multiprocessing.active_children() if p.pid is not None}


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many requests per worker, so ordering across workers is exercised."""
    monkeypatch.setattr(parallel, "MAX_CHUNK", 1_000)


@needs_fork
@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("kind", list(EncryptionType), ids=lambda t: t.name.lower())
def test_parallel_results_equal_the_serial_cipher(kind: EncryptionType) -> None:
    cipher = CellCipher(KEY, kind)
    with CellWorkers(cipher, workers=2) as workers:
        assert workers.workers == 2
        cells = workers.encrypt_many(VALUES)
        assert [len(c) for c in cells] == [65 + 16 * (len(v) // 16) for v in VALUES]
        assert cipher.decrypt_many(cells) == VALUES  # byte-compatible with the plain cipher
        assert workers.decrypt_many(cipher.encrypt_many(VALUES)) == VALUES
        if kind is EncryptionType.DETERMINISTIC:
            assert cells == cipher.encrypt_many(VALUES)
        else:
            assert len(set(cells)) == len(cells)  # fresh IVs in every worker


@needs_fork
@pytest.mark.usefixtures("small_chunks")
def test_submissions_overlap_and_keep_their_order() -> None:
    cipher = CellCipher(KEY, EncryptionType.DETERMINISTIC)
    batches = [VALUES[i::3] + [bytes([i])] * parallel.MIN_PARALLEL for i in range(3)]
    with CellWorkers(cipher, workers=3) as workers:
        pending = [workers.submit_encrypt(batch) for batch in batches]
        results = [p.result() for p in reversed(pending)][::-1]
        assert all(p.done() for p in pending)
    assert results == [cipher.encrypt_many(batch) for batch in batches]


@needs_fork
@pytest.mark.usefixtures("small_chunks")
def test_one_bad_cell_fails_the_batch_with_the_fixed_message() -> None:
    cipher = CellCipher(KEY, EncryptionType.RANDOMIZED)
    cells = cipher.encrypt_many(VALUES)
    bad = len(cells) - 3
    cells[bad] = cells[bad][:40] + bytes((cells[bad][40] ^ 1,)) + cells[bad][41:]
    with CellWorkers(cipher, workers=2) as workers:
        with pytest.raises(DecryptionError) as caught:
            workers.decrypt_many(cells)
        assert str(caught.value) == DecryptionError.MESSAGE
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__
        # A foreign key, a truncated cell and a non-bytes cell fail the same way.
        foreign = CellCipher(OTHER).encrypt_many(VALUES)
        for batch in (foreign, [*cells[:-1], cells[-1][:-1]], [*VALUES[:-1], 7]):
            with pytest.raises(DecryptionError, match=f"^{DecryptionError.MESSAGE}$"):
                workers.decrypt_many(batch)  # type: ignore[arg-type]
        # The workers survive a failed batch.
        assert workers.decrypt_many(cipher.encrypt_many(VALUES)) == VALUES


@needs_fork
def test_encrypting_a_non_bytes_value_is_a_type_error() -> None:
    with CellWorkers(CellCipher(KEY), workers=2) as workers:
        for odd in ("text", 5, object()):
            with pytest.raises(TypeError, match="normalize typed values first") as caught:
                workers.encrypt_many([*VALUES, odd])  # type: ignore[list-item]
            assert repr(odd) not in str(caught.value)
        values = [bytearray(v) for v in VALUES[:-1]] + [memoryview(VALUES[-1])]
        cells = workers.encrypt_many(values)  # type: ignore[arg-type]
        assert CellCipher(KEY).decrypt_many(cells) == VALUES


@needs_fork
def test_close_joins_every_worker_and_refuses_more_work() -> None:
    before = _children()
    workers = CellWorkers(CellCipher(KEY), workers=2)
    started = _children() - before
    assert len(started) == 2
    pending = workers.submit_encrypt(VALUES * 4)
    workers.close()
    workers.close()  # idempotent
    assert _children() - before == set()
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped, not a zombie
    with pytest.raises(CryptoError, match="closed"):
        workers.encrypt_many(VALUES)
    assert pending.done()  # work submitted before close either finished or fails clearly
    outcome: list[bytes] | str
    try:
        outcome = pending.result()
    except CryptoError as error:
        outcome = str(error)
    if isinstance(outcome, str):
        assert outcome == "these cell workers are closed"
    else:
        assert CellCipher(KEY).decrypt_many(outcome) == VALUES * 4


@needs_fork
def test_a_dead_worker_fails_its_work_instead_of_hanging() -> None:
    with CellWorkers(CellCipher(KEY), workers=2) as workers:
        for child in multiprocessing.active_children():
            if child.name.startswith("cleanroom-cells-") and child.pid is not None:
                os.kill(child.pid, signal.SIGKILL)
                child.join()
        with pytest.raises(CryptoError, match="exited"):
            workers.encrypt_many(VALUES)


@needs_fork
def test_key_material_is_inherited_never_pickled() -> None:
    cipher = CellCipher(KEY)
    with pytest.raises(TypeError):
        pickle.dumps(cipher)  # so a start method that pickles would fail at construction
    with CellWorkers(cipher, workers=2) as workers:
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(workers)
        assert "redacted" in repr(workers)
        assert KEY.secret_bytes().hex() not in repr(workers)


@pytest.mark.parametrize("count", [0, 1])
def test_one_worker_or_none_runs_in_process(count: int) -> None:
    before = _children()
    cipher = CellCipher(KEY, EncryptionType.DETERMINISTIC)
    with CellWorkers(cipher, workers=count) as workers:
        assert workers.workers == 0
        assert _children() == before
        assert workers.encrypt_many(VALUES) == cipher.encrypt_many(VALUES)
        with pytest.raises(DecryptionError, match=f"^{DecryptionError.MESSAGE}$"):
            workers.decrypt_many([b"\x01" * 65])


def test_without_fork_it_runs_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "fork_available", lambda: False)
    cipher = CellCipher(KEY)
    with CellWorkers(cipher, workers=4) as workers:
        assert workers.workers == 0
        assert cipher.decrypt_many(workers.encrypt_many(VALUES)) == VALUES


@needs_fork
def test_tiny_inputs_stay_in_process() -> None:
    cipher = CellCipher(KEY, EncryptionType.DETERMINISTIC)
    with CellWorkers(cipher, workers=2) as workers:
        assert workers.encrypt_many([]) == []
        assert workers.decrypt_many([]) == []
        few = VALUES[: parallel.MIN_PARALLEL - 1]
        assert workers.encrypt_many(few) == cipher.encrypt_many(few)
        with pytest.raises(TypeError):
            workers.encrypt_many(["text"])  # type: ignore[list-item]


def test_default_worker_count_is_capped() -> None:
    assert 1 <= parallel.default_workers() <= parallel.MAX_DEFAULT_WORKERS
    with pytest.raises(TypeError):
        CellWorkers(b"\x00" * 32)  # type: ignore[arg-type]
