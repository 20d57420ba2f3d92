"""Each party's key broker, speaking the Confidential Containers KBS protocol.

- :func:`create_app` / :class:`BrokerSettings`: the broker service of one party
  (``POST /kbs/v0/auth``, ``POST /kbs/v0/attest``, ``GET /kbs/v0/resource/<party>/cek/<name>``).
- :class:`ReleasePolicy`: when the party's key may go to an enclave (rules in
  :data:`RELEASE_RULES`); :class:`DecisionLog`: where every decision is written.
- :func:`fetch_cek` / :class:`KbsClient`: the enclave's side; keys arrive as JWE sealed to
  an ephemeral key (:mod:`cleanroom.broker.jwe`). :data:`ENCLAVE_COMMAND` is the same as an
  enclave command (``fetch-cek``) for ``cleanroom.tee.enclave_main.COMMANDS``.

See ``docs/broker.md``.
"""

from cleanroom.broker.client import (
    ENCLAVE_COMMAND,
    PROTOCOL_VERSION,
    KbsClient,
    KeyRelease,
    fetch_cek,
)
from cleanroom.broker.jwe import seal, unseal
from cleanroom.broker.log import DecisionLog, verify_decision_log
from cleanroom.broker.policy import (
    CEK_TYPE,
    RELEASE_RULES,
    Authorization,
    ContractAuthority,
    ReleasePolicy,
    ResourcePath,
    add_veto,
    read_vetoes,
)
from cleanroom.broker.service import RECEIPT_HEADER, BrokerSettings, create_app
from cleanroom.broker.sessions import COOKIE, AttestedEnclave

__all__ = [
    "CEK_TYPE",
    "COOKIE",
    "ENCLAVE_COMMAND",
    "PROTOCOL_VERSION",
    "RECEIPT_HEADER",
    "RELEASE_RULES",
    "AttestedEnclave",
    "Authorization",
    "BrokerSettings",
    "ContractAuthority",
    "DecisionLog",
    "KbsClient",
    "KeyRelease",
    "ReleasePolicy",
    "ResourcePath",
    "add_veto",
    "create_app",
    "fetch_cek",
    "read_vetoes",
    "seal",
    "unseal",
    "verify_decision_log",
]
