"""Cell encryption and decryption spread over worker processes: :class:`CellWorkers`.

One core encrypts about 600,000 cells a second, and per-cell HMAC-SHA256 is most of
that. :class:`CellWorkers` runs the same :class:`~cleanroom.crypto.CellCipher` batch
calls in ``workers`` forked processes, so a large batch uses every core::

    cipher = CellCipher(cek, EncryptionType.RANDOMIZED)
    with CellWorkers(cipher) as workers:          # forks now: the workers inherit the key
        cells = workers.encrypt_many(values)      # same cells as cipher.encrypt_many(values)
        pending = workers.submit_encrypt(more)    # returns at once; the workers encrypt...
        ...                                       # ...while this process does other work
        more_cells = pending.result()

Key material: the worker processes are started with the ``fork`` start method *after* the
cipher exists, so each one holds the cipher's derived keys as a copy-on-write image of
this process's memory. No key is ever pickled, written to a pipe, or written to disk
(:class:`~cleanroom.crypto.CellCipher` refuses pickling, so a start method that pickles
would fail loudly rather than leak). Only plaintexts going in and cells coming out cross
the pipes. Randomized IVs come from ``os.urandom`` in each worker, so forked workers share
no random state.

Inside a TEE the worker processes stay inside the same TEE: in a confidential VM (SEV-SNP,
TDX) a fork is an ordinary process of the same guest, in the same encrypted memory; under
Gramine-SGX a fork starts a child enclave of the same measurement, and Gramine copies the
parent's memory to it over its own encrypted, attested channel between the two enclaves.

Forking copies only the calling thread. Create a :class:`CellWorkers` while no other
thread of this process can hold a lock the workers need (the workers touch nothing but
their cipher and their pipe); the party client makes one per large import.

The results are exactly those of the serial calls: order is preserved, deterministic
cells are byte-equal, and a batch with a bad cell raises the one fixed
:class:`~cleanroom.errors.DecryptionError` (no index, no value). With ``workers <= 1``, on a
platform without ``fork``, or for inputs under :data:`MIN_PARALLEL` items, the calls run in
this process on the cipher itself.

Transport (measured, 10,000 cells of 65 bytes): a list of ``bytes`` in ``marshal`` format
decodes in 0.25 ms, against 0.74 ms for a pickle and 2.5 ms for slicing one packed buffer
by a length array; it encodes in 0.6 ms (pickle: 2.2 ms). So each request and reply is one
message of ``marshal``-encoded ``list[bytes]``, which both ends read with the same
interpreter (the worker is a fork of this one). Each worker has a sender and a reader
thread here, so submitting never waits for a worker and a worker never waits to reply.
"""

from __future__ import annotations

import collections
import marshal
import math
import multiprocessing
import os
import queue
import signal
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Final, NoReturn

from cleanroom.crypto.cells import CellCipher, EncryptionType
from cleanroom.errors import CryptoError, DecryptionError

#: Inputs with fewer items than this are handled in this process (IPC would cost more).
MIN_PARALLEL: Final = 2_048
#: The most items one request to one worker carries (bounds the messages in flight).
MAX_CHUNK: Final = 16_384
#: The most worker processes :func:`default_workers` picks.
MAX_DEFAULT_WORKERS: Final = 4

_ENCRYPT: Final = b"E"
_DECRYPT: Final = b"D"
_STOP: Final = b"S"
_OK: Final = 0
_BAD_CELL: Final = 1
_NOT_BYTES: Final = 2
_FAILED: Final = 3

_NOT_BYTES_MESSAGE: Final = "CellCipher encrypts bytes; normalize typed values first"
_JOIN_SECONDS: Final = 5.0


def default_workers() -> int:
    """The CPUs this process may run on, at most :data:`MAX_DEFAULT_WORKERS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_WORKERS))


def fork_available() -> bool:
    """Whether this platform can start worker processes with ``fork``."""
    return "fork" in multiprocessing.get_all_start_methods()


class PendingCells:
    """The result of :meth:`CellWorkers.submit_encrypt` / :meth:`~CellWorkers.submit_decrypt`."""

    __slots__ = ("_parts",)

    def __init__(self, parts: list[Future[list[bytes]]]) -> None:
        self._parts = parts

    def done(self) -> bool:
        """Whether every part has finished (so :meth:`result` will not wait)."""
        return all(part.done() for part in self._parts)

    def result(self) -> list[bytes]:
        """The cells (or plaintexts), in input order; waits for the workers.

        Raises :class:`~cleanroom.errors.DecryptionError` if any cell of the batch is bad,
        ``TypeError`` if an input to encrypt was not bytes, and
        :class:`~cleanroom.errors.CryptoError` if a worker failed or was closed.
        """
        out: list[bytes] = []
        failure: BaseException | None = None
        for part in self._parts:
            try:
                out.extend(part.result())
            except (CryptoError, TypeError) as error:
                # Keep waiting for the other parts so nothing is left running for this
                # batch; report one error for the whole batch.
                if failure is None or isinstance(error, DecryptionError):
                    failure = error
        if failure is not None:
            if isinstance(failure, DecryptionError):
                raise DecryptionError() from None
            if isinstance(failure, TypeError):
                raise TypeError(_NOT_BYTES_MESSAGE) from None
            raise CryptoError(str(failure)) from None
        return out


class CellWorkers:
    """Batch encryption and decryption with one :class:`CellCipher` in worker processes.

    ``CellWorkers(cipher, workers=None)`` forks ``workers`` processes (default
    :func:`default_workers`) that inherit ``cipher``. Use it as a context manager, or call
    :meth:`close`: the workers are stopped and joined, and nothing is left running.

    Thread-safe: several threads may submit at once. The results equal those of
    ``cipher.encrypt_many`` / ``cipher.decrypt_many`` (see the module docstring).
    """

    def __init__(self, cipher: CellCipher, *, workers: int | None = None) -> None:
        if not isinstance(cipher, CellCipher):
            raise TypeError("CellWorkers needs a CellCipher")
        count = default_workers() if workers is None else int(workers)
        self._cipher = cipher
        self._lock = threading.Lock()
        self._closed = False
        self._next = 0
        self._workers: list[_Worker] = []
        # Stops the workers if this object is dropped without close(); runs at most once.
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)
        if count > 1 and fork_available():
            try:
                context = multiprocessing.get_context("fork")
                for index in range(count):
                    self._workers.append(_Worker.start(context, cipher, index, self._workers))
            except BaseException:
                self.close()
                raise

    @property
    def workers(self) -> int:
        """How many worker processes run (0: every call runs in this process)."""
        return len(self._workers)

    @property
    def encryption_type(self) -> EncryptionType:
        """The encryption type of the cipher (see :class:`CellCipher`)."""
        return self._cipher.encryption_type

    def encrypt_many(self, values: Sequence[bytes]) -> list[bytes]:
        """``cipher.encrypt_many(values)``, spread over the workers."""
        return self.submit_encrypt(values).result()

    def decrypt_many(self, cells: Sequence[bytes]) -> list[bytes]:
        """``cipher.decrypt_many(cells)``, spread over the workers; one bad cell fails all."""
        return self.submit_decrypt(cells).result()

    def submit_encrypt(self, values: Sequence[bytes]) -> PendingCells:
        """Start encrypting ``values`` and return at once; :meth:`PendingCells.result` waits."""
        return self._submit(_ENCRYPT, values)

    def submit_decrypt(self, cells: Sequence[bytes]) -> PendingCells:
        """Start decrypting ``cells`` and return at once; :meth:`PendingCells.result` waits."""
        return self._submit(_DECRYPT, cells)

    def _submit(self, op: bytes, items: Sequence[bytes]) -> PendingCells:
        if self._closed:
            raise CryptoError("these cell workers are closed")
        count = len(items)
        if not self._workers or count < MIN_PARALLEL:
            return PendingCells([self._in_process(op, items)])
        size = min(MAX_CHUNK, math.ceil(count / len(self._workers)))
        parts: list[Future[list[bytes]]] = []
        for start in range(0, count, size):
            chunk = items[start : start + size]
            try:
                message = op + marshal.dumps(chunk if type(chunk) is list else list(chunk))
            except ValueError:  # not bytes-like: fail as the cipher would
                parts.append(self._in_process(op, chunk))
                continue
            with self._lock:
                if self._closed:
                    raise CryptoError("these cell workers are closed")
                worker = self._workers[self._next % len(self._workers)]
                self._next += 1
                parts.append(worker.submit(message))
        return PendingCells(parts)

    def _in_process(self, op: bytes, items: Sequence[bytes]) -> Future[list[bytes]]:
        future: Future[list[bytes]] = Future()
        try:
            if op == _ENCRYPT:
                future.set_result(self._cipher.encrypt_many(items))
            else:
                future.set_result(self._cipher.decrypt_many(items))
        except (DecryptionError, TypeError) as error:
            future.set_exception(error)
        return future

    def close(self) -> None:
        """Stop and join the workers; work not yet sent to them fails. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()

    def __enter__(self) -> CellWorkers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._workers)} workers"
        return f"CellWorkers({self._cipher!r}, {state})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("cell workers hold key material and cannot be pickled")


class _Worker:
    """One forked process, its pipe, and this process's sender and reader threads."""

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._pending: collections.deque[Future[list[bytes]]] = collections.deque()
        self._lock = threading.Lock()
        self._broken: str | None = None
        name = process.name
        self._sender = threading.Thread(target=self._send_loop, name=f"{name}-send", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name=f"{name}-read", daemon=True)
        self._sender.start()
        self._reader.start()

    @classmethod
    def start(
        cls,
        context: multiprocessing.context.BaseContext,
        cipher: CellCipher,
        index: int,
        siblings: Sequence[_Worker],
    ) -> _Worker:
        parent, child = context.Pipe(duplex=True)
        # With "fork" the target and its arguments are inherited, never pickled; the
        # cipher's __reduce__ would raise if they were.
        others = [parent] + [s.conn for s in siblings]
        process = context.Process(  # type: ignore[attr-defined]
            target=_serve,
            args=(cipher, child, others),
            name=f"cleanroom-cells-{index}",
            daemon=True,
        )
        try:
            process.start()
        finally:
            child.close()
        return cls(process, parent)

    def submit(self, message: bytes) -> Future[list[bytes]]:
        future: Future[list[bytes]] = Future()
        with self._lock:
            if self._broken is not None:
                raise CryptoError(self._broken)
            self._pending.append(future)
            self._outbox.put(message)
        return future

    def _send_loop(self) -> None:
        while True:
            message = self._outbox.get()
            if message is None:
                return
            try:
                self.conn.send_bytes(message)
            except (OSError, ValueError):
                self._fail("a cell worker process exited")
                return

    def _read_loop(self) -> None:
        while True:
            try:
                reply = self.conn.recv_bytes()
            except (EOFError, OSError):
                self._fail("a cell worker process exited")
                return
            with self._lock:
                future = self._pending.popleft() if self._pending else None
            if future is None:  # pragma: no cover - a reply nobody asked for
                continue
            status = reply[0]
            if status == _OK:
                future.set_result(marshal.loads(memoryview(reply)[1:]))  # noqa: S302 - our own fork
            elif status == _BAD_CELL:
                future.set_exception(DecryptionError())
            elif status == _NOT_BYTES:
                future.set_exception(TypeError(_NOT_BYTES_MESSAGE))
            else:
                future.set_exception(CryptoError("a cell worker process failed"))

    def _fail(self, reason: str) -> None:
        with self._lock:
            if self._broken is None:
                self._broken = reason
            pending = list(self._pending)
            self._pending.clear()
        for future in pending:
            if not future.done():
                future.set_exception(CryptoError(reason))

    def stop(self) -> None:
        """Drop messages not yet sent, then tell the worker to stop after its current one."""
        self._fail("these cell workers are closed")
        while True:
            try:
                self._outbox.get_nowait()
            except queue.Empty:
                break
        self._outbox.put(_STOP)
        self._outbox.put(None)

    def join(self) -> None:
        self._sender.join(_JOIN_SECONDS)
        self.process.join(_JOIN_SECONDS)
        if self.process.is_alive():  # pragma: no cover - a stuck worker
            self.process.terminate()
            self.process.join()
        self.conn.close()
        self._reader.join(_JOIN_SECONDS)
        self.process.close()


def _stop_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.stop()
    for worker in workers:
        worker.join()
    workers.clear()


def _serve(cipher: CellCipher, conn: Connection, inherited: Sequence[Connection]) -> None:
    """The worker process: answer requests on ``conn`` until told to stop or EOF."""
    # Ctrl-C goes to the whole process group; the parent decides, then closes us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for other in inherited:  # this process's copies of the parent's ends
        other.close()
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        op = message[:1]
        if op != _ENCRYPT and op != _DECRYPT:
            return
        try:
            items = marshal.loads(memoryview(message)[1:])  # noqa: S302 - from our parent
            out = cipher.encrypt_many(items) if op == _ENCRYPT else cipher.decrypt_many(items)
            reply = bytes((_OK,)) + marshal.dumps(out)
        except DecryptionError:
            reply = bytes((_BAD_CELL,))
        except TypeError:
            reply = bytes((_NOT_BYTES if op == _ENCRYPT else _BAD_CELL,))
        except Exception:  # noqa: BLE001 - reported as one opaque failure; nothing leaks
            reply = bytes((_FAILED,))
        try:
            conn.send_bytes(reply)
        except OSError:
            return


__all__ = ["MAX_CHUNK", "MIN_PARALLEL", "CellWorkers", "PendingCells", "default_workers"]
