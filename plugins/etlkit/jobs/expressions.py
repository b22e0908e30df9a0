"""The safe expression language of filters, split branches and derived columns.

A hand-written tokenizer and recursive-descent parser build a tree, which is type-checked
against the input schema and compiled to plain Python closures over a row tuple. Nothing is
ever passed to ``eval``/``exec``/``compile``, and no Python name or attribute is reachable:
the only callables are the six functions listed in ``FUNCTIONS``.

Nulls follow SQL three-valued logic; a condition that evaluates to null does not match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from etlkit.jobs.columns import NUMERIC_TYPES, Column, arrow_array, arrow_type_of
from etlkit.jobs.conversion import canonical_text

MAX_LENGTH = 4000
MAX_DEPTH = 50
MAX_TREE_DEPTH = 200
FUNCTIONS = ("coalesce", "concat", "lower", "upper", "trim", "round")
_COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
_KEYWORDS = {"and", "or", "not", "is", "null", "in", "true", "false", "contains", "starts_with", "ends_with"}
_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>\d+(?:\.\d+)?)
      | (?P<string>'(?:[^']|'')*')
      | (?P<quoted>`[^`]*`)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>==|!=|<=|>=|[<>+\-*/(),.])""",
    re.VERBOSE,
)

Evaluator = Callable[[tuple], Any]


class ExpressionError(ValueError):
    def __init__(self, message: str, position: int, hint: str = ""):
        super().__init__(f"{message} at position {position}" + (f"; {hint}" if hint else ""))
        self.position = position


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    position: int  # 1-based character offset


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH + 1)
    tokens, offset = [], 0
    while offset < len(text):
        match = _TOKEN.match(text, offset)
        if match is None:
            raise ExpressionError(f"unexpected character {text[offset]!r}", offset + 1)
        if match.lastgroup != "space":
            tokens.append(Token(match.lastgroup, match.group(), offset + 1))
        offset = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


# ---- tree -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    position: int


@dataclass(frozen=True)
class Literal(Node):
    value: Any
    type: str


@dataclass(frozen=True)
class ColumnRef(Node):
    name: str


@dataclass(frozen=True)
class Unary(Node):
    op: str  # "not" | "-"
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str  # and, or, comparisons, + - * /
    left: Node
    right: Node


@dataclass(frozen=True)
class IsNull(Node):
    operand: Node
    negated: bool


@dataclass(frozen=True)
class InList(Node):
    operand: Node
    values: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class StringMatch(Node):
    op: str  # contains | starts_with | ends_with
    operand: Node
    pattern: str


@dataclass(frozen=True)
class Call(Node):
    function: str
    args: tuple[Node, ...]


class _Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def keyword(self, *words: str) -> bool:
        token = self.current
        return token.kind == "ident" and token.text.lower() in words

    def take(self) -> Token:
        token = self.current
        self.index += 1
        return token

    def expect_op(self, op: str) -> Token:
        if self.current.kind != "op" or self.current.text != op:
            raise ExpressionError(
                f"expected {op!r}, found {self.current.text or 'end'!r}", self.current.position
            )
        return self.take()

    def nested(self, parse: Callable[[], Node]) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression nested deeper than {MAX_DEPTH} levels", self.current.position)
        try:
            return parse()
        finally:
            self.depth -= 1

    def parse(self) -> Node:
        node = self.parse_or()
        if self.current.kind != "end":
            raise ExpressionError(f"unexpected {self.current.text!r}", self.current.position)
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.keyword("or"):
            token = self.take()
            node = Binary(token.position, "or", node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_not()
        while self.keyword("and"):
            token = self.take()
            node = Binary(token.position, "and", node, self.parse_not())
        return node

    def parse_not(self) -> Node:
        if self.keyword("not"):
            token = self.take()
            return Unary(token.position, "not", self.nested(self.parse_not))
        return self.parse_comparison()

    def parse_comparison(self) -> Node:
        left = self.parse_sum()
        token = self.current
        if token.kind == "op" and token.text in _COMPARISONS:
            self.take()
            return Binary(token.position, token.text, left, self.parse_sum())
        if self.keyword("is"):
            self.take()
            negated = self.keyword("not")
            if negated:
                self.take()
            if not self.keyword("null"):
                raise ExpressionError("expected 'null' after 'is'", self.current.position)
            self.take()
            return IsNull(token.position, left, negated)
        if self.keyword("not", "in"):
            negated = self.keyword("not")
            if negated:
                self.take()
                if not self.keyword("in"):
                    raise ExpressionError("expected 'in' after 'not'", self.current.position)
            self.take()
            self.expect_op("(")
            values = [self.parse_literal()]
            while self.current.text == ",":
                self.take()
                values.append(self.parse_literal())
            self.expect_op(")")
            return InList(token.position, left, tuple(values), negated)
        if self.keyword("contains", "starts_with", "ends_with"):
            op = self.take().text.lower()
            pattern = self.parse_literal()
            if pattern.type != "string":
                raise ExpressionError(f"{op} needs a string literal", pattern.position)
            return StringMatch(token.position, op, left, pattern.value)
        return left

    def parse_sum(self) -> Node:
        node = self.parse_term()
        while self.current.kind == "op" and self.current.text in "+-":
            token = self.take()
            node = Binary(token.position, token.text, node, self.parse_term())
        return node

    def parse_term(self) -> Node:
        node = self.parse_unary()
        while self.current.kind == "op" and self.current.text in "*/":
            token = self.take()
            node = Binary(token.position, token.text, node, self.parse_unary())
        return node

    def parse_unary(self) -> Node:
        if self.current.kind == "op" and self.current.text == "-":
            token = self.take()
            return Unary(token.position, "-", self.nested(self.parse_unary))
        return self.parse_atom()

    def parse_atom(self) -> Node:
        token = self.current
        if token.kind == "op" and token.text == "(":
            self.take()
            node = self.nested(self.parse_or)
            self.expect_op(")")
            return node
        if token.kind == "quoted":
            self.take()
            return ColumnRef(token.position, token.text[1:-1])
        if (
            token.kind == "ident"
            and token.text.lower() in FUNCTIONS
            and self.tokens[self.index + 1].text == "("
        ):
            self.take()
            self.take()
            args = [self.nested(self.parse_or)]
            while self.current.text == ",":
                self.take()
                args.append(self.nested(self.parse_or))
            self.expect_op(")")
            return Call(token.position, token.text.lower(), tuple(args))
        is_literal = token.kind in ("number", "string") or self.keyword(
            "true", "false", "null", "date", "timestamp"
        )
        typed_text = self.keyword("date", "timestamp") and self.tokens[self.index + 1].kind == "string"
        if is_literal and (typed_text or not self.keyword("date", "timestamp")):
            return self.parse_literal()
        if token.kind == "ident":
            if token.text.lower() in _KEYWORDS:
                raise ExpressionError(f"unexpected keyword {token.text!r}", token.position)
            self.take()
            name = token.text
            if self.current.text == "." and self.tokens[self.index + 1].kind == "ident":
                self.take()
                name = f"{name}.{self.take().text}"
            if self.current.text == "(":
                raise ExpressionError(
                    f"unknown function {name!r}; allowed: {', '.join(FUNCTIONS)}", token.position
                )
            if self.current.text == ".":
                raise ExpressionError("attribute access is not allowed", self.current.position)
            return ColumnRef(token.position, name)
        raise ExpressionError(f"unexpected {token.text or 'end of expression'!r}", token.position)

    def parse_literal(self) -> Literal:
        token = self.take()
        if token.kind == "number":
            if "." in token.text:
                return Literal(token.position, Decimal(token.text), "decimal")
            return Literal(token.position, int(token.text), "integer")
        if token.kind == "string":
            return Literal(token.position, token.text[1:-1].replace("''", "'"), "string")
        word = token.text.lower() if token.kind == "ident" else ""
        if word in ("true", "false"):
            return Literal(token.position, word == "true", "boolean")
        if word == "null":
            return Literal(token.position, None, "null")
        if word in ("date", "timestamp") and self.current.kind == "string":
            text = self.take().text[1:-1]
            try:
                if word == "date":
                    return Literal(token.position, date.fromisoformat(text), "date")
                value = datetime.fromisoformat(text)
                if value.tzinfo is None:
                    value = value.replace(tzinfo=UTC)
                return Literal(token.position, value.astimezone(UTC), "timestamp")
            except ValueError:
                raise ExpressionError(f"invalid {word} literal {text!r}", token.position) from None
        if token.kind == "op" and token.text == "-" and self.current.kind == "number":
            number = self.parse_literal()
            return Literal(token.position, -number.value, number.type)
        raise ExpressionError(f"expected a literal, found {token.text or 'end'!r}", token.position)


def parse(text: str) -> Node:
    node = _Parser(text).parse()
    if _tree_depth(node) > MAX_TREE_DEPTH:
        # Compilation and evaluation recurse over the tree, so a very long operator chain
        # (``a + a + … + a``) would otherwise end in a RecursionError.
        raise ExpressionError(f"expression deeper than {MAX_TREE_DEPTH} operations; split it", 0)
    return node


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Call):
        return node.args
    operand = getattr(node, "operand", None)
    return (operand,) if operand is not None else ()


def _tree_depth(root: Node) -> int:
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in _children(node))
    return deepest


# ---- type checking and compilation ------------------------------------------------------------


def _comparable(left: str, right: str) -> bool:
    if "null" in (left, right):
        return True
    if left in NUMERIC_TYPES and right in NUMERIC_TYPES:
        return True
    return left == right


def _arithmetic_type(left: str, right: str, op: str) -> str:
    if "null" in (left, right):
        return "null" if left == right else (right if left == "null" else left)
    if "float" in (left, right):
        return "float"
    if "decimal" in (left, right):
        return "decimal"
    return "float" if op == "/" else "integer"


def _numeric_pair(a: Any, b: Any) -> tuple[Any, Any]:
    if isinstance(a, float) and isinstance(b, Decimal):
        return a, float(b)
    if isinstance(a, Decimal) and isinstance(b, float):
        return float(a), b
    return a, b


def _arith(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    a, b = _numeric_pair(a, b)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return None
    try:
        return a / b
    except (InvalidOperation, ZeroDivisionError):
        return None


def _compare(op: str, a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    a, b = _numeric_pair(a, b)
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _round(value: Any, digits: int) -> Any:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value.quantize(Decimal(1).scaleb(-digits))
    if isinstance(value, int):
        return value
    return round(value, digits)


@dataclass(frozen=True)
class Compiled:
    evaluate: Evaluator
    type: str


class _Compiler:
    def __init__(self, schema: Mapping[str, Column]):
        self.schema = schema
        self.index = {name: position for position, name in enumerate(schema)}

    def compile(self, node: Node) -> Compiled:
        handler = getattr(self, f"_{type(node).__name__.lower()}")
        return handler(node)

    def _literal(self, node: Literal) -> Compiled:
        value = node.value
        return Compiled(lambda row: value, node.type)

    def _columnref(self, node: ColumnRef) -> Compiled:
        if node.name not in self.schema:
            known = ", ".join(self.schema)
            raise ExpressionError(f"unknown column {node.name!r}", node.position, f"known: {known}")
        position = self.index[node.name]
        return Compiled(lambda row: row[position], self.schema[node.name].type)

    def _unary(self, node: Unary) -> Compiled:
        operand = self.compile(node.operand)
        if node.op == "not":
            self._require(operand, {"boolean"}, "not", node.position)
            evaluate = operand.evaluate
            return Compiled(lambda row: None if (v := evaluate(row)) is None else not v, "boolean")
        self._require(operand, NUMERIC_TYPES, "unary minus", node.position)
        evaluate = operand.evaluate
        return Compiled(lambda row: None if (v := evaluate(row)) is None else -v, operand.type)

    def _binary(self, node: Binary) -> Compiled:
        left, right = self.compile(node.left), self.compile(node.right)
        lf, rf, op = left.evaluate, right.evaluate, node.op
        if op in ("and", "or"):
            self._require(left, {"boolean"}, op, node.position)
            self._require(right, {"boolean"}, op, node.position)
            combine = _and if op == "and" else _or
            return Compiled(lambda row: combine(lf(row), rf(row)), "boolean")
        if op in _COMPARISONS:
            if not _comparable(left.type, right.type):
                raise ExpressionError(f"cannot compare {left.type} with {right.type}", node.position)
            if op not in ("==", "!=") and "boolean" in (left.type, right.type):
                raise ExpressionError(f"{op} is not defined for boolean", node.position)
            return Compiled(lambda row: _compare(op, lf(row), rf(row)), "boolean")
        for side in (left, right):
            self._require(side, NUMERIC_TYPES, f"operator {op}", node.position)
        return Compiled(lambda row: _arith(op, lf(row), rf(row)), _arithmetic_type(left.type, right.type, op))

    def _isnull(self, node: IsNull) -> Compiled:
        evaluate, negated = self.compile(node.operand).evaluate, node.negated
        return Compiled(lambda row: (evaluate(row) is None) != negated, "boolean")

    def _inlist(self, node: InList) -> Compiled:
        operand = self.compile(node.operand)
        for literal in node.values:
            if not _comparable(operand.type, literal.type):
                raise ExpressionError(f"cannot compare {operand.type} with {literal.type}", literal.position)
        values = frozenset(v.value for v in node.values if v.value is not None)
        has_null = any(v.value is None for v in node.values)
        evaluate, negated = operand.evaluate, node.negated

        def member(row: tuple) -> bool | None:
            value = evaluate(row)
            if value is None:
                return None
            if value in values:
                return not negated
            return None if has_null else negated

        return Compiled(member, "boolean")

    def _stringmatch(self, node: StringMatch) -> Compiled:
        operand = self.compile(node.operand)
        self._require(operand, {"string"}, node.op, node.position)
        evaluate, pattern = operand.evaluate, node.pattern
        method = {"contains": str.__contains__, "starts_with": str.startswith, "ends_with": str.endswith}[
            node.op
        ]
        return Compiled(lambda row: None if (v := evaluate(row)) is None else method(v, pattern), "boolean")

    def _call(self, node: Call) -> Compiled:
        args = [self.compile(arg) for arg in node.args]
        name = node.function
        if name == "coalesce":
            kinds = {a.type for a in args} - {"null"}
            if len(kinds) > 1 and not kinds <= NUMERIC_TYPES:
                raise ExpressionError(f"coalesce arguments mix types {sorted(kinds)}", node.position)
            result = (
                _arithmetic_type(*sorted(kinds)[:2], "+") if len(kinds) > 1 else (kinds or {"null"}).pop()
            )
            funcs = [a.evaluate for a in args]
            cast = {"float": float, "decimal": Decimal}.get(result) if len(kinds) > 1 else None
            if cast is None:
                return Compiled(
                    lambda row: next((v for f in funcs if (v := f(row)) is not None), None), result
                )
            # Mixed numeric arguments: the value takes the declared result type, whichever argument gave it.
            return Compiled(
                lambda row: next((cast(v) for f in funcs if (v := f(row)) is not None), None), result
            )
        if name == "concat":
            funcs = [a.evaluate for a in args]
            return Compiled(
                lambda row: "".join(canonical_text(v) for f in funcs if (v := f(row)) is not None), "string"
            )
        if name in ("lower", "upper", "trim"):
            if len(args) != 1:
                raise ExpressionError(f"{name} takes one argument", node.position)
            self._require(args[0], {"string"}, name, node.position)
            evaluate = args[0].evaluate
            method = {"lower": str.lower, "upper": str.upper, "trim": str.strip}[name]
            return Compiled(lambda row: None if (v := evaluate(row)) is None else method(v), "string")
        if len(args) not in (1, 2):
            raise ExpressionError("round takes one or two arguments", node.position)
        self._require(args[0], NUMERIC_TYPES, "round", node.position)
        digits = 0
        if len(args) == 2:
            literal = node.args[1]
            if not (isinstance(literal, Literal) and literal.type == "integer"):
                raise ExpressionError("round digits must be an integer literal", node.args[1].position)
            digits = literal.value
        evaluate = args[0].evaluate
        return Compiled(lambda row: _round(evaluate(row), digits), args[0].type)

    @staticmethod
    def _require(compiled: Compiled, allowed: set[str] | frozenset[str], what: str, position: int) -> None:
        if compiled.type not in allowed and compiled.type != "null":
            raise ExpressionError(
                f"{what} needs {' or '.join(sorted(allowed))}, got {compiled.type}", position
            )


def compile_expression(text: str, schema: Mapping[str, Column]) -> Compiled:
    """Parse and type-check ``text`` against ``schema`` (name -> Column, in row order)."""
    return _Compiler(schema).compile(parse(text))


def compile_condition(text: str, schema: Mapping[str, Column]) -> Evaluator:
    """A boolean expression; the returned callable gives True only when the row matches."""
    compiled = compile_expression(text, schema)
    if compiled.type not in ("boolean", "null"):
        raise ExpressionError(f"condition must be boolean, got {compiled.type}", 1)
    evaluate = compiled.evaluate
    return lambda row: evaluate(row) is True


# ---- vectorised compilation to pyarrow.compute -------------------------------------------------
#
# The same checked tree compiles to a function of a RecordBatch that calls pyarrow.compute kernels
# on whole columns. Constructs whose Arrow semantics would differ from the row semantics above
# (decimal division, mixed-type lists, text of timestamps and floats in concat) are not vectorised:
# those expressions run the row evaluator over the batch, so results never depend on the path.

Vector = Callable[[Any], Any]  # RecordBatch -> pyarrow Array or Scalar


class NotVectorized(Exception):
    pass


@dataclass(frozen=True)
class VectorCompiled:
    evaluate: Vector
    type: str


def _as_float(value):
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(value, pa.float64())


class _VectorCompiler:
    def __init__(self, schema: Mapping[str, Column]):
        self.checker = _Compiler(schema)  # type rules and error messages are the row compiler's
        self.schema = schema
        self.index = {name: position for position, name in enumerate(schema)}

    def compile(self, node: Node) -> VectorCompiled:
        return getattr(self, f"_{type(node).__name__.lower()}")(node)

    def _literal(self, node: Literal) -> VectorCompiled:
        import pyarrow as pa

        if node.type == "decimal":
            scalar = pa.scalar(node.value)
        else:
            scalar = pa.scalar(node.value, arrow_type_of(node.type))
        return VectorCompiled(lambda batch: scalar, node.type)

    def _columnref(self, node: ColumnRef) -> VectorCompiled:
        self.checker.compile(node)
        position = self.index[node.name]
        return VectorCompiled(lambda batch: batch.column(position), self.schema[node.name].type)

    def _unary(self, node: Unary) -> VectorCompiled:
        import pyarrow.compute as pc

        checked = self.checker.compile(node)
        operand = self.compile(node.operand).evaluate
        if checked.type == "null":
            return self._null(checked.type)
        function = pc.invert if node.op == "not" else pc.negate_checked
        return VectorCompiled(lambda batch: function(operand(batch)), checked.type)

    def _null(self, type_name: str) -> VectorCompiled:
        import pyarrow as pa

        scalar = pa.scalar(None, arrow_type_of(type_name) or pa.float64())
        return VectorCompiled(lambda batch: scalar, type_name)

    def _numeric_operands(self, left: VectorCompiled, right: VectorCompiled):
        if "float" in (left.type, right.type) and {left.type, right.type} != {"float"}:
            lf, rf = left.evaluate, right.evaluate
            return (lambda batch: _as_float(lf(batch))), (lambda batch: _as_float(rf(batch)))
        return left.evaluate, right.evaluate

    def _binary(self, node: Binary) -> VectorCompiled:
        import pyarrow as pa
        import pyarrow.compute as pc

        checked = self.checker.compile(node)
        left, right = self.compile(node.left), self.compile(node.right)
        op = node.op
        if op in ("and", "or"):
            function = pc.and_kleene if op == "and" else pc.or_kleene
            lf, rf = self._boolean(left), self._boolean(right)
            return VectorCompiled(lambda batch: function(lf(batch), rf(batch)), "boolean")
        if "null" in (left.type, right.type):
            return self._null("boolean" if op in _COMPARISONS else checked.type)
        lf, rf = self._numeric_operands(left, right)
        if op in _COMPARISONS:
            function = {
                "==": pc.equal,
                "!=": pc.not_equal,
                "<": pc.less,
                "<=": pc.less_equal,
                ">": pc.greater,
                ">=": pc.greater_equal,
            }[op]
            return VectorCompiled(lambda batch: function(lf(batch), rf(batch)), "boolean")
        if op == "/":
            if checked.type == "decimal":
                raise NotVectorized("decimal division")
            zero = pa.scalar(0.0)

            def divide(batch):
                divisor = _as_float(rf(batch))
                divisor = pc.if_else(pc.equal(divisor, zero), pa.scalar(None, pa.float64()), divisor)
                return pc.divide(_as_float(lf(batch)), divisor)

            return VectorCompiled(divide, "float")
        function = {"+": pc.add_checked, "-": pc.subtract_checked, "*": pc.multiply_checked}[op]
        return VectorCompiled(lambda batch: function(lf(batch), rf(batch)), checked.type)

    def _boolean(self, compiled: VectorCompiled):
        import pyarrow as pa

        if compiled.type == "null":
            return lambda batch: pa.scalar(None, pa.bool_())
        return compiled.evaluate

    def _isnull(self, node: IsNull) -> VectorCompiled:
        import pyarrow as pa
        import pyarrow.compute as pc

        self.checker.compile(node)
        operand = self.compile(node.operand).evaluate
        function = pc.is_valid if node.negated else pc.is_null

        def evaluate(batch):
            value = operand(batch)
            if isinstance(value, pa.Scalar):
                return pa.scalar(value.is_valid == node.negated)
            return function(value)

        return VectorCompiled(evaluate, "boolean")

    def _inlist(self, node: InList) -> VectorCompiled:
        import pyarrow as pa
        import pyarrow.compute as pc

        self.checker.compile(node)
        operand = self.compile(node.operand)
        kinds = {v.type for v in node.values} - {"null"}
        if operand.type == "null" or kinds - {operand.type} or operand.type == "decimal":
            raise NotVectorized("a list of another type than its operand")
        value_set = arrow_array(
            [v.value for v in node.values if v.value is not None], arrow_type_of(operand.type)
        )
        has_null = any(v.value is None for v in node.values)
        found, missing = (
            pa.scalar(not node.negated),
            pa.scalar(None if has_null else node.negated, pa.bool_()),
        )
        evaluate_operand = operand.evaluate

        def member(batch):
            value = evaluate_operand(batch)
            hit = pc.is_in(value, value_set=value_set)  # a null operand gives null below
            return pc.if_else(pc.is_null(value), pa.scalar(None, pa.bool_()), pc.if_else(hit, found, missing))

        return VectorCompiled(member, "boolean")

    def _stringmatch(self, node: StringMatch) -> VectorCompiled:
        import pyarrow.compute as pc

        self.checker.compile(node)
        operand = self.compile(node.operand)
        if operand.type == "null":
            return self._null("boolean")
        function = {"contains": pc.match_substring, "starts_with": pc.starts_with, "ends_with": pc.ends_with}[
            node.op
        ]
        evaluate, pattern = operand.evaluate, node.pattern
        return VectorCompiled(lambda batch: function(evaluate(batch), pattern=pattern), "boolean")

    def _call(self, node: Call) -> VectorCompiled:
        import pyarrow as pa
        import pyarrow.compute as pc

        checked = self.checker.compile(node)
        args = [self.compile(arg) for arg in node.args]
        name = node.function
        if name == "coalesce":
            if checked.type == "null":
                return self._null("null")
            target = arrow_type_of(checked.type)
            if target is None:  # decimal: the argument types may differ in precision and scale
                raise NotVectorized("coalesce of decimals")
            funcs = [a.evaluate for a in args if a.type != "null"]
            return VectorCompiled(
                lambda batch: pc.coalesce(*(pc.cast(f(batch), target) for f in funcs)), checked.type
            )
        if name == "concat":
            if any(a.type in ("float", "timestamp") for a in args):
                raise NotVectorized("text of floats and timestamps")
            funcs = [a.evaluate for a in args if a.type != "null"]

            def concat(batch):
                # A null adds nothing; null_handling="skip" would drop rows whose parts are all null.
                parts = [pc.fill_null(pc.cast(f(batch), pa.string()), "") for f in funcs]
                if not parts:
                    return pa.scalar("")
                return pc.binary_join_element_wise(*parts, "")

            return VectorCompiled(concat, "string")
        if name in ("lower", "upper", "trim"):
            if args[0].type == "null":
                return self._null("string")
            function = {"lower": pc.utf8_lower, "upper": pc.utf8_upper, "trim": pc.utf8_trim_whitespace}[name]
            evaluate = args[0].evaluate
            return VectorCompiled(lambda batch: function(evaluate(batch)), "string")
        digits = node.args[1].value if len(node.args) == 2 else 0
        evaluate, kind = args[0].evaluate, args[0].type
        if kind in ("integer", "null"):
            return VectorCompiled(evaluate, kind)
        return VectorCompiled(
            lambda batch: pc.round(evaluate(batch), ndigits=digits, round_mode="half_to_even"), kind
        )


def compile_vector(text: str, schema: Mapping[str, Column]) -> VectorCompiled:
    """``text`` compiled to a function of a RecordBatch giving an Arrow array (or scalar).

    Type errors are the row compiler's; an expression that cannot run on Arrow kernels with the
    same result evaluates the row form over the batch's values instead.
    """

    import pyarrow as pa

    node = parse(text)
    row_form = _Compiler(schema).compile(node)
    evaluate, arrow_type = row_form.evaluate, arrow_type_of(row_form.type)

    def by_rows(batch):
        columns = [column.to_pylist() for column in batch.columns]
        values = [evaluate(row) for row in zip(*columns, strict=True)] if columns else []
        return arrow_array(values, arrow_type) if arrow_type is not None else arrow_array(values)

    try:
        vector = _VectorCompiler(schema).compile(node)
    except NotVectorized:
        return VectorCompiled(by_rows, row_form.type)

    def by_kernels(batch):
        try:
            return vector.evaluate(batch)
        except pa.ArrowInvalid:  # overflow, or a decimal product beyond 38 digits: Python's numbers
            return by_rows(batch)

    return VectorCompiled(by_kernels, row_form.type)


def compile_vector_condition(text: str, schema: Mapping[str, Column]) -> Vector:
    """A condition as a function of a RecordBatch giving a boolean mask: true only where it matches."""
    import pyarrow as pa
    import pyarrow.compute as pc

    compiled = compile_vector(text, schema)
    if compiled.type not in ("boolean", "null"):
        raise ExpressionError(f"condition must be boolean, got {compiled.type}", 1)
    evaluate = compiled.evaluate

    def mask(batch):
        value = evaluate(batch)
        if isinstance(value, pa.Scalar):
            return pa.repeat(pa.scalar(value.as_py() is True), batch.num_rows)
        return pc.fill_null(value, False)

    return mask
