"""The SQL subset: what parses into which plan, and precise errors for everything else."""

from __future__ import annotations

import pytest

from cleanroom.errors import QueryError
from cleanroom.sql.parser import (
    Aggregate,
    AlterColumnPlan,
    And,
    Between,
    ColumnItem,
    Compare,
    Constant,
    InList,
    IsNull,
    Like,
    Not,
    Or,
    OrderKey,
    Param,
    Sample,
    SelectPlan,
    conjuncts,
    leaves,
    parse,
)


def test_a_full_select() -> None:
    plan = parse(
        "SELECT TOP (5) Age, name FROM dbo.People TABLESAMPLE (10 PERCENT) REPEATABLE (42) "
        "WHERE age BETWEEN ? AND ? AND NOT (sex = ? OR name LIKE ?) AND x IN (?, 7) "
        "AND y <> 3 AND z IS NOT NULL ORDER BY age DESC, name"
    )
    assert isinstance(plan, SelectPlan)
    assert plan.table == "People"
    assert plan.items == (ColumnItem("age"), ColumnItem("name"))
    assert plan.top == 5
    assert plan.sample == Sample(10.0, 42)
    assert plan.order == (OrderKey("age", True), OrderKey("name", False))
    assert plan.where == And(
        (
            Between("age", Param(0), Param(1)),
            Not(Or((Compare("sex", "=", Param(2)), Like("name", Param(3))))),
            InList("x", (Param(4), Constant(7))),
            Compare("y", "<>", Constant(3)),
            IsNull("z", negated=True),
        )
    )
    assert [leaf.column for leaf in leaves(plan.where)] == ["age", "sex", "name", "x", "y", "z"]
    assert len(conjuncts(plan.where)) == 5


def test_named_parameters_negations_and_flipped_comparisons() -> None:
    plan = parse(
        "SELECT * FROM t WHERE @Low < a AND b NOT LIKE @p AND c NOT BETWEEN @x AND @y "
        "AND d NOT IN (@x) AND NOT e IS NULL;"
    )
    assert isinstance(plan, SelectPlan)
    assert plan.items == ()
    assert plan.where == And(
        (
            Compare("a", ">", Param("low")),
            Like("b", Param("p"), negated=True),
            Between("c", Param("x"), Param("y"), negated=True),
            InList("d", (Param("x"),), negated=True),
            IsNull("e", negated=True),
        )
    )


def test_aggregates() -> None:
    plan = parse("SELECT COUNT(*), COUNT(a), MIN(a), MAX(b) FROM t WHERE a >= ?")
    assert isinstance(plan, SelectPlan)
    assert plan.is_aggregate
    assert plan.items == (
        Aggregate("count", None),
        Aggregate("count", "a"),
        Aggregate("min", "a"),
        Aggregate("max", "b"),
    )


@pytest.mark.parametrize(
    ("sql", "plan"),
    [
        (
            "ALTER TABLE t ALTER COLUMN C int ENCRYPTED WITH (COLUMN_ENCRYPTION_KEY = [k1], "
            "ENCRYPTION_TYPE = Randomized, ALGORITHM = 'AEAD_AES_256_CBC_HMAC_SHA_256')",
            AlterColumnPlan("t", "c", "int", "k1", "randomized", None),
        ),
        (
            "alter table dbo.t alter column c nvarchar(40) encrypted with "
            "(encryption_type = deterministic, column_encryption_key = k2) not null",
            AlterColumnPlan("t", "c", "nvarchar(40)", "k2", "deterministic", False),
        ),
        (
            "ALTER TABLE t ALTER COLUMN c decimal(10, 2)",
            AlterColumnPlan("t", "c", "decimal(10,2)", None, None, None),
        ),
    ],
)
def test_alter_column(sql: str, plan: AlterColumnPlan) -> None:
    assert parse(sql) == plan


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("SELECT a FROM t GROUP BY a", "GROUP BY"),
        ("SELECT a FROM t JOIN u ON t.a = u.a", "JOIN"),
        ("DELETE FROM t", "DELETE"),
        ("UPDATE t SET a = 1", "UPDATE"),
        ("SELECT a + 1 FROM t", "ADD"),
        ("SELECT a FROM t WHERE a = ? AND b = @x", "either ? or @name"),
        ("SELECT * FROM t TABLESAMPLE (10 ROWS)", "TABLESAMPLE"),
        ("SELECT SUM(a) FROM t", "SUM"),
        ("SELECT a FROM t WHERE a LIKE 'x' ESCAPE '!'", "ESCAPE"),
        ("SELECT a FROM t WHERE a = (SELECT 1)", "SUBQUERY"),
        ("SELECT a FROM t WHERE a IN (SELECT b FROM u)", "subquery"),
        ("SELECT a FROM t ORDER BY a OFFSET 5 ROWS", "OFFSET"),
        ("SELECT a FROM t UNION SELECT b FROM u", "UNION"),
        ("SELECT DISTINCT a FROM t", "DISTINCT"),
        ("SELECT COUNT(DISTINCT a) FROM t", "DISTINCT"),
        ("SELECT a, COUNT(*) FROM t", "GROUP BY"),
        ("SELECT a AS b FROM t", "alias"),
        ("SELECT a FROM t WHERE a = b", "one column and one value"),
        ("SELECT a FROM t WHERE a = 1; SELECT 2", "one statement"),
        ("SELECT a FROM t WHERE UPPER(a) = ?", "UPPER"),
        ("SELECT t.a FROM t", "qualified"),
        ("SELECT a FROM t HAVING a > 1", "HAVING"),
        ("ALTER TABLE t ADD c int", "ALTER TABLE t ALTER COLUMN"),
        (
            "ALTER TABLE t ALTER COLUMN c int ENCRYPTED WITH (COLUMN_ENCRYPTION_KEY = k, "
            "ENCRYPTION_TYPE = Randomized, ALGORITHM = 'RSA_OAEP')",
            "ALGORITHM",
        ),
        (
            "ALTER TABLE t ALTER COLUMN c int ENCRYPTED WITH (COLUMN_ENCRYPTION_KEY = k, "
            "ENCRYPTION_TYPE = Sometimes)",
            "ENCRYPTION_TYPE",
        ),
        (
            "ALTER TABLE t ALTER COLUMN c int ENCRYPTED WITH (ENCRYPTION_TYPE = Randomized)",
            "COLUMN_ENCRYPTION_KEY",
        ),
        ("", "empty"),
        ("SELEC a FROM t", "SELEC"),
    ],
)
def test_unsupported_sql_names_the_construct(sql: str, names: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse(sql)
    assert names.lower() in str(caught.value).lower()
    assert isinstance(caught.value, ValueError)
