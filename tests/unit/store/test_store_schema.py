import decimal

import pytest

from cleanroom.errors import SchemaError
from cleanroom.store import ColumnSpec, ColumnType, DatasetSchema, medical_record_schema

SCHEMA_JSON = """
{
  "table": "Patients",
  "label": "risk",
  "columns": [
    {"name": "risk", "type": "tinyint", "categories": [0, 1, 2], "nullable": false},
    {"name": "age", "type": "INT", "min": 0, "max": 120},
    {"name": "site", "type": "nvarchar(40)", "encryption": "deterministic", "cek": "CEK_a"},
    {"name": "fee", "type": "decimal(10, 2)", "encrypted": false}
  ]
}
"""

SCHEMA_TOML = """
table = "Patients"
label = "risk"

[[columns]]
name = "risk"
type = "tinyint"
categories = [0, 1, 2]
nullable = false

[[columns]]
name = "age"
type = "int"
min = 0
max = 120

[[columns]]
name = "site"
type = "nvarchar(40)"
encryption = "deterministic"
cek = "CEK_a"

[[columns]]
name = "fee"
type = "decimal(10,2)"
encrypted = false
"""


def test_json_and_toml_give_the_same_schema() -> None:
    from_json = DatasetSchema.from_json(SCHEMA_JSON)
    from_toml = DatasetSchema.from_toml(SCHEMA_TOML)
    assert from_json == from_toml
    assert from_json.column("age").sql_type == "int"  # canonical spelling
    assert from_json.column("fee").sql_type == "decimal(10,2)"
    assert from_json.column("risk").encryption == "randomized"  # the safe default
    assert from_json.column("site").encryption == "deterministic"
    assert not from_json.column("fee").encrypted


def test_to_json_round_trips() -> None:
    schema = DatasetSchema.from_json(SCHEMA_JSON)
    assert DatasetSchema.from_json(schema.to_json()) == schema


def test_with_default_cek_fills_only_encrypted_columns_without_one() -> None:
    schema = DatasetSchema.from_json(SCHEMA_JSON).with_default_cek("CEK_b")
    assert schema.column("risk").cek == "CEK_b"
    assert schema.column("site").cek == "CEK_a"
    assert schema.column("fee").cek is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"table": "t", "columns": []}', "at least one column"),
        ('{"table": "t; drop", "columns": [{"name": "a", "type": "int"}]}', "table name"),
        ('{"table": "t", "columns": [{"name": "a b", "type": "int"}]}', "column name"),
        ('{"table": "t", "columns": [{"name": "a", "type": "xml"}]}', "column 'a'"),
        ('{"table": "t", "columns": [{"name": "a", "type": "int", "colour": 1}]}', "unknown"),
        ('{"table": "t", "label": "b", "columns": [{"name": "a", "type": "int"}]}', "label"),
        (
            '{"table": "t", "columns": [{"name": "a", "type": "int"},'
            ' {"name": "A", "type": "int"}]}',
            "unique",
        ),
        (
            '{"table": "t", "columns": [{"name": "a", "type": "int", "encryption": "weak"}]}',
            "deterministic or randomized",
        ),
        ('{"table": "t", "columns": [{"name": "a", "type": "tinyint", "max": 300}]}', "min/max"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_schemas_are_refused(text: str, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        DatasetSchema.from_json(text)


def test_medical_record_schema_is_all_encrypted_randomized_with_risk_as_label() -> None:
    schema = medical_record_schema()
    assert schema.table == "MedicalRecords"
    assert schema.label == "risk"
    assert schema.column_names[:2] == ("risk", "age")
    assert "chestPain" in schema.column_names
    assert all(c.encrypted and c.encryption == "randomized" for c in schema.columns)
    assert schema.column("chestPain").categories == (1, 2, 3, 4)


def test_coercion_validates_and_never_quotes_the_value() -> None:
    spec = ColumnSpec(name="age", sql_type="tinyint", minimum=18, maximum=110)
    assert spec.coerce(" 42 ") == 42
    assert spec.coerce("") is None
    assert spec.coerce(42.0) == 42
    for bad in ("forty-two-SECRET", "17", "300", 42.5, True):
        with pytest.raises(ValueError, match=r"not a valid|below|above") as info:
            spec.coerce(bad)
        assert "SECRET" not in str(info.value)
        assert str(bad) not in str(info.value)


def test_coerce_many_matches_coerce() -> None:
    spec = ColumnSpec(name="x", sql_type="smallint", categories=(1, 2, 3))
    assert spec.coerce_many(["1", "", None, 2, "3"]) == [1, None, None, 2, 3]
    with pytest.raises(ValueError, match="categories"):
        spec.coerce_many(["1", "4"])
    bit = ColumnSpec(name="b", sql_type="bit")
    assert bit.coerce_many(["0", "1", "", "true", None]) == [False, True, None, True, None]


@pytest.mark.parametrize(
    ("sql_type", "text", "expected"),
    [
        ("decimal(5,2)", "123.456", decimal.Decimal("123.46")),
        ("money", "12.3456", decimal.Decimal("12.3456")),
        ("nvarchar(3)", "abc", "abc"),
        ("varbinary(4)", "0x0a0b", b"\x0a\x0b"),
        ("date", "2024-02-29", __import__("datetime").date(2024, 2, 29)),
        ("float", "1e300", 1e300),
    ],
)
def test_text_coerces_to_the_type(sql_type: str, text: str, expected: object) -> None:
    assert ColumnType.parse(sql_type).coerce(text) == expected


@pytest.mark.parametrize(
    ("sql_type", "text"),
    [
        ("decimal(5,2)", "1234.5"),
        ("nvarchar(3)", "abcd"),
        ("real", "1e39"),
        ("float", "nan"),
        ("datetimeoffset", "2024-01-01T00:00:00"),
        ("datetime2", "2024-01-01T00:00:00+01:00"),
        ("int", "2147483648"),
        ("uniqueidentifier", "not-a-uuid"),
    ],
)
def test_out_of_range_text_is_refused(sql_type: str, text: str) -> None:
    with pytest.raises(ValueError, match="not a valid"):
        ColumnType.parse(sql_type).coerce(text)


def test_odd_python_values_are_value_errors() -> None:
    for sql_type in ("bit", "int", "nvarchar(5)", "date", "decimal(5,2)"):
        spec = ColumnSpec(name="x", sql_type=sql_type)
        with pytest.raises(ValueError, match="not a valid"):
            spec.coerce_many([["a", "list"]])
        with pytest.raises(ValueError, match="not a valid"):
            spec.coerce(object())
