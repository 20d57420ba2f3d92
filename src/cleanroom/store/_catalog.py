"""Catalog tables that mirror SQL Server's Always Encrypted metadata views.

=================================  ===================================================
this table                         SQL Server
=================================  ===================================================
``column_master_keys``             ``sys.column_master_keys``
``column_encryption_keys``         ``sys.column_encryption_keys``
``column_encryption_key_values``   ``sys.column_encryption_key_values``
``encrypted_columns``              the encryption columns of ``sys.columns``
``datasets``                       (cleanroom) which party owns which table, and its schema
=================================  ===================================================

Nothing here is secret: a column encryption key appears only wrapped by its column
master key, and a column master key only as a provider name and a key path.
"""

from __future__ import annotations

import sqlalchemy as sa

NAME_LENGTH = 128

metadata = sa.MetaData()

column_master_keys = sa.Table(
    "column_master_keys",
    metadata,
    sa.Column("name", sa.String(NAME_LENGTH), primary_key=True),
    sa.Column("key_store_provider_name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("key_path", sa.Text(), nullable=False),
    sa.Column("allow_enclave_computations", sa.Boolean(), nullable=False),
    # RSA PKCS#1 v1.5 SHA-256 signature of the CMK metadata (NULL unless enclave-enabled).
    sa.Column("signature", sa.LargeBinary(), nullable=True),
    sa.Column("create_date", sa.DateTime(timezone=True), nullable=False),
)

column_encryption_keys = sa.Table(
    "column_encryption_keys",
    metadata,
    sa.Column("name", sa.String(NAME_LENGTH), primary_key=True),
    sa.Column("create_date", sa.DateTime(timezone=True), nullable=False),
)

column_encryption_key_values = sa.Table(
    "column_encryption_key_values",
    metadata,
    sa.Column(
        "column_encryption_key_name",
        sa.String(NAME_LENGTH),
        sa.ForeignKey("column_encryption_keys.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "column_master_key_name",
        sa.String(NAME_LENGTH),
        sa.ForeignKey("column_master_keys.name"),
        primary_key=True,
    ),
    # The Always Encrypted ENCRYPTED_VALUE blob (version, key path, RSA-OAEP, signature).
    sa.Column("encrypted_value", sa.LargeBinary(), nullable=False),
    sa.Column("encryption_algorithm_name", sa.String(NAME_LENGTH), nullable=False),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("table_name", sa.String(NAME_LENGTH), primary_key=True),
    sa.Column("party", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("schema_json", sa.Text(), nullable=False),
    sa.Column("create_date", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("party", "name", name="uq_datasets_party_name"),
)

encrypted_columns = sa.Table(
    "encrypted_columns",
    metadata,
    sa.Column(
        "table_name",
        sa.String(NAME_LENGTH),
        sa.ForeignKey("datasets.table_name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("column_name", sa.String(NAME_LENGTH), primary_key=True),
    sa.Column("sql_type", sa.String(NAME_LENGTH), nullable=False),
    # 1 = deterministic, 2 = randomized (the TDS / sys.columns codes).
    sa.Column("encryption_type", sa.SmallInteger(), nullable=False),
    sa.Column("encryption_type_desc", sa.String(32), nullable=False),
    sa.Column(
        "column_encryption_key_name",
        sa.String(NAME_LENGTH),
        sa.ForeignKey("column_encryption_keys.name"),
        nullable=False,
    ),
    sa.Column("encryption_algorithm_name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("normalization_rule_version", sa.SmallInteger(), nullable=False),
)

__all__ = [
    "column_encryption_key_values",
    "column_encryption_keys",
    "column_master_keys",
    "datasets",
    "encrypted_columns",
    "metadata",
]
