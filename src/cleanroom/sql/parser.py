"""T-SQL text → a small plan (sqlglot's T-SQL dialect, plus a strict grammar for ALTER COLUMN).

The subset, and nothing else (anything outside it raises :class:`~cleanroom.errors.QueryError`
naming the construct)::

    SELECT [TOP (n)] * | item [, item …] FROM table [TABLESAMPLE [SYSTEM] (n PERCENT)
           [REPEATABLE (seed)]] [WHERE predicate] [ORDER BY column [ASC|DESC] [, …]]
      item      = column | COUNT(*) | COUNT(column) | MIN(column) | MAX(column)
      predicate = predicate AND predicate | predicate OR predicate | NOT predicate | (predicate)
                | column op value | value op column         op: = <> != < <= > >=
                | column [NOT] BETWEEN value AND value | column [NOT] IN (value, …)
                | column [NOT] LIKE value | column IS [NOT] NULL
      value     = ? | @name | literal (literals only against plaintext columns)

    ALTER TABLE table ALTER COLUMN column type
          [ENCRYPTED WITH (COLUMN_ENCRYPTION_KEY = key, ENCRYPTION_TYPE = Randomized|Deterministic,
                           ALGORITHM = 'AEAD_AES_256_CBC_HMAC_SHA_256')] [NULL | NOT NULL]

    CREATE [NONCLUSTERED] INDEX name ON table (column [ASC])
    DROP INDEX name ON table

Column names in a plan are lower-cased (T-SQL identifiers are case-insensitive).
Parameters are either all ``?`` (numbered 0, 1, … in the order they appear in the text) or
all ``@name`` (case-insensitive). The plan is shared by the host engine and the enclave:
the enclave parses the statement text it verified, so the host cannot make it evaluate
another predicate.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from cleanroom.errors import QueryError

CompareOp = Literal["=", "<>", "<", "<=", ">", ">="]
ParamKey: TypeAlias = int | str
"""A parameter: its position (``?``) or its lower-cased name without ``@`` (``@name``)."""

#: The only cell algorithm ``ENCRYPTED WITH`` accepts (T-SQL spells it with ``SHA_256``).
ALTER_ALGORITHM: Final = "AEAD_AES_256_CBC_HMAC_SHA_256"
MAX_STATEMENT_CHARS: Final = 100_000


@dataclass(frozen=True, slots=True)
class Param:
    """A parameter placeholder (``?`` or ``@name``)."""

    key: ParamKey


@dataclass(frozen=True, slots=True)
class Constant:
    """A literal in the statement text (number, string or NULL)."""

    value: int | float | str | None


Value: TypeAlias = Param | Constant


@dataclass(frozen=True, slots=True)
class Compare:
    """``column op value``."""

    column: str
    op: CompareOp
    value: Value


@dataclass(frozen=True, slots=True)
class Between:
    """``column [NOT] BETWEEN low AND high`` (inclusive)."""

    column: str
    low: Value
    high: Value
    negated: bool = False


@dataclass(frozen=True, slots=True)
class InList:
    """``column [NOT] IN (value, …)``."""

    column: str
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Like:
    """``column [NOT] LIKE pattern`` (T-SQL wildcards ``%``, ``_``, ``[set]``, ``[^set]``)."""

    column: str
    pattern: Value
    negated: bool = False


@dataclass(frozen=True, slots=True)
class IsNull:
    """``column IS [NOT] NULL``."""

    column: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class And:
    """Conjunction of two or more predicates."""

    items: tuple[Predicate, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Disjunction of two or more predicates."""

    items: tuple[Predicate, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """Negation (three-valued: NOT unknown is unknown)."""

    item: Predicate


Leaf: TypeAlias = Compare | Between | InList | Like | IsNull
Predicate: TypeAlias = Leaf | And | Or | Not


@dataclass(frozen=True, slots=True)
class ColumnItem:
    """A projected column."""

    column: str


@dataclass(frozen=True, slots=True)
class Aggregate:
    """``COUNT(*)`` (column ``None``), ``COUNT(c)``, ``MIN(c)`` or ``MAX(c)``."""

    function: Literal["count", "min", "max"]
    column: str | None


SelectItem: TypeAlias = ColumnItem | Aggregate


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One ``ORDER BY`` key."""

    column: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Sample:
    """``TABLESAMPLE (percent PERCENT) [REPEATABLE (seed)]``."""

    percent: float
    seed: int | None


@dataclass(frozen=True, slots=True)
class SelectPlan:
    """A parsed ``SELECT``. ``items`` is empty for ``SELECT *``."""

    table: str
    items: tuple[SelectItem, ...]
    where: Predicate | None = None
    order: tuple[OrderKey, ...] = ()
    top: int | None = None
    sample: Sample | None = None

    @property
    def is_aggregate(self) -> bool:
        """True when every item is an aggregate (one result row)."""
        return bool(self.items) and all(isinstance(i, Aggregate) for i in self.items)


@dataclass(frozen=True, slots=True)
class AlterColumnPlan:
    """A parsed ``ALTER TABLE … ALTER COLUMN``: the column's new type and encryption.

    ``cek`` is ``None`` when the column is to be stored as plaintext (decryption).
    """

    table: str
    column: str
    sql_type: str
    cek: str | None
    encryption: Literal["deterministic", "randomized"] | None
    nullable: bool | None


@dataclass(frozen=True, slots=True)
class CreateIndexPlan:
    """A parsed ``CREATE INDEX name ON table (column)``: a sealed enclave index."""

    name: str
    table: str
    column: str


@dataclass(frozen=True, slots=True)
class DropIndexPlan:
    """A parsed ``DROP INDEX name ON table``."""

    name: str
    table: str


Plan: TypeAlias = SelectPlan | AlterColumnPlan | CreateIndexPlan | DropIndexPlan


def parse(sql: str) -> Plan:
    """Parse one statement of the supported subset; raise :class:`QueryError` otherwise."""
    if not isinstance(sql, str):
        raise TypeError("a SQL statement is a str")
    if len(sql) > MAX_STATEMENT_CHARS:
        raise QueryError(f"statement longer than {MAX_STATEMENT_CHARS} characters")
    return _parse_cached(sql)


@functools.lru_cache(maxsize=256)
def _parse_cached(sql: str) -> Plan:
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise QueryError("empty statement")
    if re.match(r"(?is)^alter\b", text):
        return _parse_alter(text)
    if re.match(r"(?is)^(create|drop)\s+(nonclustered\s+)?index\b", text):
        return _parse_index(text)
    if not re.match(r"(?is)^select\b", text):
        word = text.split(None, 1)[0].upper()
        raise QueryError(
            f"unsupported statement {word}: only SELECT, ALTER TABLE … ALTER COLUMN, "
            "CREATE INDEX and DROP INDEX"
        )
    try:
        with _quiet_sqlglot():
            statements = sqlglot.parse(text, read="tsql")
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        where = f" at line {first.get('line')}, column {first.get('col')}" if first else ""
        raise QueryError(f"cannot parse the statement{where}") from None
    if len(statements) != 1 or statements[0] is None:
        raise QueryError("exactly one statement per call")
    tree = statements[0]
    if not isinstance(tree, exp.Select):
        raise QueryError(f"unsupported statement {type(tree).__name__.upper()}")
    return _Builder().select(tree)


class _quiet_sqlglot:
    """sqlglot logs (and falls back) on syntax it does not know; we raise instead."""

    def __enter__(self) -> None:
        self._logger = logging.getLogger("sqlglot")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self._logger.setLevel(self._level)


_SELECT_ARGS: Final = frozenset({"expressions", "from_", "from", "where", "order", "limit"})
_COMPARE: Final[dict[type[exp.Expression], CompareOp]] = {
    exp.EQ: "=",
    exp.NEQ: "<>",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
_FLIP: Final[dict[CompareOp, CompareOp]] = {
    "=": "=",
    "<>": "<>",
    "<": ">",
    "<=": ">=",
    ">": "<",
    ">=": "<=",
}


def _construct(node: exp.Expression) -> str:
    """A readable name for an unsupported construct."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", type(node).__name__).upper()


class _Builder:
    def __init__(self) -> None:
        self._positional = 0
        self._style: str | None = None

    def select(self, tree: exp.Select) -> SelectPlan:
        for name, value in tree.args.items():
            if value in (None, False, [], ()) or name in _SELECT_ARGS:
                continue
            label = {"group": "GROUP BY", "having": "HAVING", "joins": "JOIN", "with_": "WITH"}
            raise QueryError(f"unsupported construct: {label.get(name, name.upper())}")
        source = tree.args.get("from_") or tree.args.get("from")
        if source is None:
            raise QueryError("a SELECT needs FROM table")
        table_node = source.this
        if not isinstance(table_node, exp.Table):
            raise QueryError(f"unsupported FROM source: {_construct(table_node)}")
        table, sample = self._table(table_node)
        items = self._items(tree.expressions)
        # Parameters are numbered in text order: select list, WHERE, ORDER BY (none there).
        where_node = tree.args.get("where")
        where = self._predicate(where_node.this) if where_node is not None else None
        order = self._order(tree.args.get("order"))
        top = self._top(tree.args.get("limit"))
        plan = SelectPlan(
            table=table, items=items, where=where, order=order, top=top, sample=sample
        )
        if plan.items and any(isinstance(i, Aggregate) for i in items) and not plan.is_aggregate:
            raise QueryError("columns mixed with aggregates need GROUP BY, which is unsupported")
        if plan.is_aggregate and order:
            raise QueryError("ORDER BY with an aggregate-only select list is unsupported")
        return plan

    def _table(self, node: exp.Table) -> tuple[str, Sample | None]:
        for name, value in node.args.items():
            if value in (None, False, [], ()) or name in ("this", "db", "catalog", "sample"):
                continue
            raise QueryError(f"unsupported construct on the table: {name.upper()}")
        if node.args.get("catalog") is not None:
            raise QueryError("three-part table names are unsupported")
        db = node.args.get("db")
        if db is not None and db.name.lower() != "dbo":
            raise QueryError("only the dbo schema is supported")
        sample_node = node.args.get("sample")
        sample = None if sample_node is None else self._sample(sample_node)
        return node.name, sample

    def _sample(self, node: exp.Expression) -> Sample:
        if not isinstance(node, exp.TableSample):
            raise QueryError("unsupported TABLESAMPLE form")
        for name, value in node.args.items():
            if value in (None, False) or name in ("percent", "seed", "method"):
                continue
            raise QueryError(f"unsupported TABLESAMPLE form: {name.upper()} (use n PERCENT)")
        method = node.args.get("method")
        if method is not None and str(method.name).upper() != "SYSTEM":
            raise QueryError("unsupported TABLESAMPLE method (only SYSTEM)")
        percent_node = node.args.get("percent")
        if percent_node is None:
            raise QueryError("TABLESAMPLE needs (n PERCENT)")
        percent = self._number(percent_node, "TABLESAMPLE percent")
        if not 0 <= percent <= 100:
            raise QueryError("TABLESAMPLE percent must be between 0 and 100")
        seed_node = node.args.get("seed")
        seed = None
        if seed_node is not None:
            value = self._number(seed_node, "REPEATABLE seed")
            if value != int(value) or not 0 <= value < 2**63:
                raise QueryError("REPEATABLE seed must be a non-negative integer")
            seed = int(value)
        return Sample(percent=float(percent), seed=seed)

    @staticmethod
    def _number(node: exp.Expression, what: str) -> float:
        if isinstance(node, exp.Literal) and not node.is_string:
            try:
                return float(node.this)
            except ValueError:
                pass
        raise QueryError(f"{what} must be a number literal")

    def _items(self, nodes: list[exp.Expression]) -> tuple[SelectItem, ...]:
        if len(nodes) == 1 and isinstance(nodes[0], exp.Star):
            return ()
        items: list[SelectItem] = []
        for node in nodes:
            if isinstance(node, exp.Star):
                raise QueryError("* must be the whole select list")
            if isinstance(node, exp.Alias):
                raise QueryError("unsupported construct: column alias (AS)")
            if isinstance(node, exp.Column):
                items.append(ColumnItem(self._column_name(node)))
            elif isinstance(node, exp.Count | exp.Min | exp.Max):
                items.append(self._aggregate(node))
            else:
                raise QueryError(f"unsupported select item: {_construct(node)}")
        return tuple(items)

    def _aggregate(self, node: exp.Count | exp.Min | exp.Max) -> Aggregate:
        function: Literal["count", "min", "max"] = (
            "count"
            if isinstance(node, exp.Count)
            else "min"
            if isinstance(node, exp.Min)
            else "max"
        )
        if node.args.get("expressions"):
            raise QueryError(f"{function.upper()} takes one argument")
        arg = node.this
        if isinstance(arg, exp.Distinct):
            raise QueryError(f"unsupported construct: {function.upper()}(DISTINCT …)")
        if isinstance(arg, exp.Star):
            if function != "count":
                raise QueryError(f"{function.upper()}(*) is not SQL")
            return Aggregate("count", None)
        if not isinstance(arg, exp.Column):
            raise QueryError(f"{function.upper()} takes a column")
        return Aggregate(function, self._column_name(arg))

    def _column_name(self, node: exp.Expression) -> str:
        if not isinstance(node, exp.Column):
            raise QueryError(f"expected a column, found {_construct(node)}")
        if node.args.get("table") is not None:
            raise QueryError("qualified column names (t.c) are unsupported")
        # T-SQL identifiers are case-insensitive: plans carry lower-case column names.
        return str(node.name).lower()

    def _order(self, node: exp.Expression | None) -> tuple[OrderKey, ...]:
        if node is None:
            return ()
        keys = []
        for ordered in node.expressions:
            if not isinstance(ordered, exp.Ordered):
                raise QueryError("unsupported ORDER BY form")
            if ordered.args.get("with_fill"):
                raise QueryError("unsupported ORDER BY form: WITH FILL")
            keys.append(OrderKey(self._column_name(ordered.this), bool(ordered.args.get("desc"))))
        return tuple(keys)

    def _top(self, node: exp.Expression | None) -> int | None:
        if node is None:
            return None
        if not isinstance(node, exp.Limit) or node.args.get("offset") is not None:
            raise QueryError("unsupported construct: OFFSET")
        count = node.expression
        if isinstance(count, exp.Paren):
            count = count.this
        if not (isinstance(count, exp.Literal) and not count.is_string and count.this.isdigit()):
            raise QueryError("TOP takes an integer literal (TOP (n) PERCENT is unsupported)")
        return int(count.this)

    # -- predicates -----------------------------------------------------------------------

    def _predicate(self, node: exp.Expression) -> Predicate:
        if isinstance(node, exp.Paren):
            return self._predicate(node.this)
        if isinstance(node, exp.And):
            return And(self._flatten(node, exp.And))
        if isinstance(node, exp.Or):
            return Or(self._flatten(node, exp.Or))
        if isinstance(node, exp.Not):
            inner = node.this
            while isinstance(inner, exp.Paren):
                inner = inner.this
            if isinstance(inner, exp.Is):
                return self._is_null(inner, negated=True)
            if isinstance(inner, exp.Between | exp.In | exp.Like):
                return self._leaf(inner, negated=True)
            return Not(self._predicate(inner))
        if isinstance(node, exp.Is):
            return self._is_null(node, negated=False)
        return self._leaf(node, negated=False)

    def _flatten(self, node: exp.Expression, kind: type[exp.Expression]) -> tuple[Predicate, ...]:
        parts: list[Predicate] = []
        for child in (node.this, node.expression):
            bare = child
            while isinstance(bare, exp.Paren) and isinstance(bare.this, kind):
                bare = bare.this
            if isinstance(bare, kind):
                parts.extend(self._flatten(bare, kind))
            else:
                parts.append(self._predicate(child))
        return tuple(parts)

    def _is_null(self, node: exp.Is, *, negated: bool) -> IsNull:
        if not isinstance(node.expression, exp.Null):
            raise QueryError("IS takes NULL (IS [NOT] NULL)")
        return IsNull(self._column_name(node.this), negated)

    def _leaf(self, node: exp.Expression, *, negated: bool) -> Leaf:
        op = _COMPARE.get(type(node))
        if op is not None:
            left, right = node.this, node.expression
            if isinstance(left, exp.Column) and not isinstance(right, exp.Column):
                return Compare(self._column_name(left), op, self._value(right))
            if isinstance(right, exp.Column) and not isinstance(left, exp.Column):
                value = self._value(left)
                return Compare(self._column_name(right), _FLIP[op], value)
            if isinstance(left, exp.Column) and isinstance(right, exp.Column):
                raise QueryError(f"a comparison needs one column and one value ({op})")
            odd = right if isinstance(left, exp.Literal | exp.Placeholder | exp.Parameter) else left
            raise QueryError(f"unsupported construct in a comparison: {_construct(odd)}")
        if isinstance(node, exp.Between):
            column = self._column_name(node.this)
            low = self._value(node.args["low"])
            return Between(column, low, self._value(node.args["high"]), negated)
        if isinstance(node, exp.In):
            if node.args.get("query") is not None:
                raise QueryError("unsupported construct: IN (subquery)")
            column = self._column_name(node.this)
            if not node.expressions:
                raise QueryError("IN needs at least one value")
            return InList(column, tuple(self._value(v) for v in node.expressions), negated)
        if isinstance(node, exp.Like):
            if node.args.get("escape") is not None:
                raise QueryError("unsupported construct: LIKE … ESCAPE")
            # sqlglot marks ``a NOT LIKE b`` with ``negate`` rather than wrapping it in Not.
            flipped = negated != bool(node.args.get("negate"))
            return Like(self._column_name(node.this), self._value(node.expression), flipped)
        if isinstance(node, exp.Escape):
            raise QueryError("unsupported construct: LIKE … ESCAPE")
        raise QueryError(f"unsupported construct in WHERE: {_construct(node)}")

    def _value(self, node: exp.Expression) -> Value:
        if isinstance(node, exp.Paren):
            return self._value(node.this)
        if isinstance(node, exp.Placeholder):
            self._check_style("?")
            key = self._positional
            self._positional += 1
            return Param(key)
        if isinstance(node, exp.Parameter):
            self._check_style("@")
            return Param(str(node.name).lower())
        if isinstance(node, exp.Null):
            return Constant(None)
        if isinstance(node, exp.Literal):
            if node.is_string:
                return Constant(str(node.this))
            text = str(node.this)
            try:
                return Constant(int(text))
            except ValueError:
                return Constant(float(text))
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
            inner = self._value(node.this)
            if isinstance(inner, Constant) and isinstance(inner.value, int | float):
                return Constant(-inner.value)
        raise QueryError(f"unsupported value: {_construct(node)} (use a parameter or a literal)")

    def _check_style(self, style: str) -> None:
        if self._style is None:
            self._style = style
        elif self._style != style:
            raise QueryError("a statement uses either ? or @name parameters, not both")


# -- ALTER TABLE … ALTER COLUMN ------------------------------------------------------------

_IDENT = r"\[?([A-Za-z_][A-Za-z0-9_]*)\]?"
_ALTER_RE: Final = re.compile(
    rf"""^ALTER\s+TABLE\s+(?:\[?dbo\]?\s*\.\s*)?{_IDENT}\s+ALTER\s+COLUMN\s+{_IDENT}\s+
        (?P<type>[A-Za-z_][A-Za-z0-9_]*(?:\s*\(\s*[A-Za-z0-9_ ,]*\))?)
        (?:\s+ENCRYPTED\s+WITH\s*\((?P<options>[^()]*)\))?
        (?:\s+(?P<null>NOT\s+NULL|NULL))?\s*$""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)
_OPTION_RE: Final = re.compile(
    r"^\s*([A-Za-z_]+)\s*=\s*(\[?[A-Za-z_][A-Za-z0-9_]*\]?|'[^']*')\s*$", re.DOTALL
)


def _parse_alter(text: str) -> AlterColumnPlan:
    match = _ALTER_RE.match(text)
    if match is None:
        raise QueryError(
            "unsupported ALTER statement: only ALTER TABLE t ALTER COLUMN c type "
            "[ENCRYPTED WITH (COLUMN_ENCRYPTION_KEY = k, ENCRYPTION_TYPE = Randomized|"
            "Deterministic, ALGORITHM = 'AEAD_AES_256_CBC_HMAC_SHA_256')]"
        )
    table, column = match.group(1), match.group(2).lower()
    sql_type = re.sub(r"\s+", "", match.group("type"))
    null = match.group("null")
    nullable = None if null is None else not null.upper().startswith("NOT")
    options_text = match.group("options")
    if options_text is None:
        return AlterColumnPlan(table, column, sql_type, None, None, nullable)
    options: dict[str, str] = {}
    for part in options_text.split(","):
        option = _OPTION_RE.match(part)
        if option is None:
            raise QueryError("ENCRYPTED WITH takes NAME = value options separated by commas")
        name = option.group(1).upper()
        if name in options:
            raise QueryError(f"ENCRYPTED WITH option {name} given twice")
        options[name] = option.group(2).strip("[]'")
    unknown = set(options) - {"COLUMN_ENCRYPTION_KEY", "ENCRYPTION_TYPE", "ALGORITHM"}
    if unknown:
        raise QueryError(f"unsupported ENCRYPTED WITH option {sorted(unknown)[0]}")
    if "COLUMN_ENCRYPTION_KEY" not in options or "ENCRYPTION_TYPE" not in options:
        raise QueryError("ENCRYPTED WITH needs COLUMN_ENCRYPTION_KEY and ENCRYPTION_TYPE")
    algorithm = options.get("ALGORITHM", ALTER_ALGORITHM)
    if algorithm.upper() != ALTER_ALGORITHM:
        raise QueryError(f"unsupported ALGORITHM: only '{ALTER_ALGORITHM}'")
    kind = options["ENCRYPTION_TYPE"].lower()
    if kind not in ("randomized", "deterministic"):
        raise QueryError("ENCRYPTION_TYPE must be Randomized or Deterministic")
    encryption: Literal["deterministic", "randomized"] = (
        "randomized" if kind == "randomized" else "deterministic"
    )
    return AlterColumnPlan(
        table, column, sql_type, options["COLUMN_ENCRYPTION_KEY"], encryption, nullable
    )


# -- CREATE INDEX / DROP INDEX ------------------------------------------------------------

_TABLE = rf"(?:\[?dbo\]?\s*\.\s*)?{_IDENT}"
_CREATE_INDEX_RE: Final = re.compile(
    rf"^CREATE\s+(?:NONCLUSTERED\s+)?INDEX\s+{_IDENT}\s+ON\s+{_TABLE}\s*\(\s*{_IDENT}(?:\s+ASC)?\s*\)$",
    re.IGNORECASE | re.DOTALL,
)
_DROP_INDEX_RE: Final = re.compile(
    rf"^DROP\s+INDEX\s+{_IDENT}\s+ON\s+{_TABLE}$", re.IGNORECASE | re.DOTALL
)


def _parse_index(text: str) -> CreateIndexPlan | DropIndexPlan:
    if text[:4].upper() == "DROP":
        match = _DROP_INDEX_RE.match(text)
        if match is None:
            raise QueryError("unsupported DROP INDEX form: only DROP INDEX name ON table")
        return DropIndexPlan(match.group(1).lower(), match.group(2))
    match = _CREATE_INDEX_RE.match(text)
    if match is None:
        raise QueryError(
            "unsupported CREATE INDEX form: only CREATE [NONCLUSTERED] INDEX name ON table "
            "(column) (one column, ascending; no INCLUDE, WHERE or WITH)"
        )
    return CreateIndexPlan(match.group(1).lower(), match.group(2), match.group(3).lower())


# -- walking plans --------------------------------------------------------------------------


def leaves(predicate: Predicate | None) -> list[Leaf]:
    """Every leaf of ``predicate``, in text order."""
    if predicate is None:
        return []
    if isinstance(predicate, And | Or):
        return [leaf for item in predicate.items for leaf in leaves(item)]
    if isinstance(predicate, Not):
        return leaves(predicate.item)
    return [predicate]


def leaf_values(leaf: Leaf) -> tuple[Value, ...]:
    """The values (parameters and constants) of one leaf."""
    if isinstance(leaf, Compare):
        return (leaf.value,)
    if isinstance(leaf, Between):
        return (leaf.low, leaf.high)
    if isinstance(leaf, InList):
        return leaf.values
    if isinstance(leaf, Like):
        return (leaf.pattern,)
    return ()


def conjuncts(predicate: Predicate | None) -> tuple[Predicate, ...]:
    """The top-level AND terms of ``predicate`` (one term if it is not an AND)."""
    if predicate is None:
        return ()
    if isinstance(predicate, And):
        return predicate.items
    return (predicate,)


__all__ = [
    "ALTER_ALGORITHM",
    "Aggregate",
    "AlterColumnPlan",
    "And",
    "Between",
    "ColumnItem",
    "Compare",
    "CompareOp",
    "Constant",
    "CreateIndexPlan",
    "DropIndexPlan",
    "InList",
    "IsNull",
    "Leaf",
    "Like",
    "Not",
    "Or",
    "OrderKey",
    "Param",
    "ParamKey",
    "Plan",
    "Predicate",
    "Sample",
    "SelectItem",
    "SelectPlan",
    "Value",
    "conjuncts",
    "leaf_values",
    "leaves",
    "parse",
]
