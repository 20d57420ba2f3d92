"""The default on-disk layout the ``cleanroom`` command uses for a party."""

from __future__ import annotations

import os
from dataclasses import dataclass
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
    """

    workdir: Path = DEFAULT_WORKDIR
    store_url: str | None = None

    @property
    def url(self) -> str:
        """The store URL: ``store_url`` or the SQLite file in the work directory."""
        return self.store_url or default_url(self.workdir)

    def key_directory(self, party: str) -> Path:
        """Where ``party``'s local column master keys live."""
        return self.workdir / "keys" / check_identifier(party, "a party name")

    def open_store(self) -> Store:
        """Open (creating the catalog if needed) the store; creates the work directory for
        the default SQLite store."""
        if self.store_url is None:
            self._make_workdir()
        return open_store(self.url)

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
        """A :class:`PartyClient` for ``party`` on this workspace's store and key store."""
        key_store = self.key_store(party, create=create_key_store)
        return PartyClient(self.open_store(), key_store, party=party)

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
