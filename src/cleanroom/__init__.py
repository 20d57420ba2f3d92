"""cleanroom — a confidential clean room for multi-party machine learning.

Each party encrypts its sensitive columns in the SQL Server Always Encrypted format,
signs a contract with the others, and releases its keys only to an attested enclave
that runs the agreed computation. See ``README.md`` and ``docs/``.
"""

from cleanroom.errors import CleanroomError

__version__ = "0.1.0"

__all__ = ["CleanroomError", "__version__"]
