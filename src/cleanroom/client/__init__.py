"""The party's client: transparent column encryption for one data owner.

:class:`PartyClient` creates the party's keys (a column master key in its key store, a
column encryption key wrapped by it), creates its encrypted table from a schema, imports a
CSV file or a DataFrame (validated first, encrypted in batches, one transaction), and reads
rows back decrypted — searching deterministic columns by encrypted equality. The store it
talks to sees only wrapped keys and cells. See ``docs/store.md``.

:class:`ScoringClient` scores records with the model kept in an attested enclave, after
verifying its measurement against the contract (``docs/scoring.md``).
"""

from cleanroom.client._client import DEFAULT_BATCH_SIZE, PartyClient, PartyKeys, ProgressCallback
from cleanroom.client._workspace import DEFAULT_WORKDIR, Workspace
from cleanroom.client.scoring import ScoringClient

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_WORKDIR",
    "PartyClient",
    "PartyKeys",
    "ProgressCallback",
    "ScoringClient",
    "Workspace",
]
