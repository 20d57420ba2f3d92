"""The default on-disk layout the ``cleanroom`` command uses for a party."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cleanroom.client._client import PartyClient
from cleanroom.errors import ConfigurationError, KeyStoreError
from cleanroom.keystores import LocalKeyStore
from cleanroom.store import Store, check_identifier, default_url, open_store

#: The work directory used when none is given.
DEFAULT_WORKDIR = Path("cleanroom-work")


@dataclass(frozen=True, slots=True)
class Workspace:
    """``<workdir>/cleanroom.db`` (unless ``store_url`` names another database) and a local
    key store per party in ``<workdir>/keys/<party>/`` (mode 0700, keys 0600).

    In a real deployment each party keeps its key directory on its own machine (or uses
    an HSM); one work directory holding several parties' keys is for development.

    Its clients share one :attr:`store`, opened on first use; :meth:`close` (or leaving a
    ``with`` block) closes it.
    """

    workdir: Path = DEFAULT_WORKDIR
    store_url: str | None = None
    # The shared store, once opened: a one-slot list, because the workspace itself is a
    # frozen value (equal and hashable by its two settings) and this is not a setting.
    _opened: list[Store] = field(default_factory=list, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def url(self) -> str:
        """The store URL: ``store_url`` or the SQLite file in the work directory."""
        return self.store_url or default_url(self.workdir)

    def key_directory(self, party: str) -> Path:
        """Where ``party``'s local column master keys live."""
        return self.workdir / "keys" / check_identifier(party, "a party name")

    @property
    def store(self) -> Store:
        """The store this workspace's clients share: opened (see :meth:`open_store`) on
        first use, closed by :meth:`close`."""
        with self._lock:
            if not self._opened:
                self._opened.append(self.open_store())
            return self._opened[0]

    def open_store(self) -> Store:
        """Open a new store that the caller closes (creating the catalog if needed);
        creates the work directory for the default SQLite store."""
        if self.store_url is None:
            self._make_workdir()
        return open_store(self.url)

    def close(self) -> None:
        """Close the shared :attr:`store` (if opened); a later client opens a new one."""
        with self._lock:
            opened, self._opened[:] = list(self._opened), []
        for store in opened:
            store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def key_store(self, party: str, *, create: bool = False) -> LocalKeyStore:
        """``party``'s local key store; without ``create`` it must already exist."""
        directory = self.key_directory(party)
        if not create and not directory.is_dir():
            raise KeyStoreError(
                f"no key store for party {party!r} at {directory} "
                f"(create one with: cleanroom keys create --party {party})"
            )
        if create:
            self._make_workdir()
        return LocalKeyStore(directory)

    def client(self, party: str, *, create_key_store: bool = False) -> PartyClient:
        """A :class:`PartyClient` for ``party`` on the shared :attr:`store` and the party's
        key store (close the client to zero the keys it unwrapped)."""
        key_store = self.key_store(party, create=create_key_store)
        return PartyClient(self.store, key_store, party=party)

    def _make_workdir(self) -> None:
        try:
            self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigurationError(
                f"cannot create the work directory {self.workdir}: {error.strerror}"
            ) from None
        if not os.access(self.workdir, os.W_OK):
            raise ConfigurationError(f"the work directory {self.workdir} is not writable")


__all__ = ["DEFAULT_WORKDIR", "Workspace"]
