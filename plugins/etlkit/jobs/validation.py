"""Validation of a job file in three layers, collecting every problem.

1. JSON syntax (line and column); 2. structure (pydantic models, unknown keys are errors);
3. semantics: file stem = name, templating only where allowed, graph rules, schema propagation
and expressions. Any problem raises ``JobDefinitionError`` whose text names the file, then one
line per problem with its JSON path, the component id and the cause.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from etlkit.jobs.columns import NUMERIC_TYPES, REJECT_REASON_COLUMN, Column, Schema, describe_schema
from etlkit.jobs.expressions import ExpressionError, compile_condition, compile_expression
from etlkit.jobs.models import COMPONENT_TYPES, Job

MAX_SHOWN_PROBLEMS = 20
SOURCE_TYPES = frozenset({"read_csv", "read_json", "read_sql"})
WRITER_TYPES = frozenset({"write_csv", "write_json", "write_sql"})
MULTI_ROUTE_TYPES = WRITER_TYPES | {"merge"}
TEMPLATED_CONFIG_KEYS = {"path"}


@dataclass(frozen=True, order=True)
class Problem:
    path: str
    message: str
    component: str | None = None

    def render(self) -> str:
        where = f" (component '{self.component}')" if self.component else ""
        return f"{self.path}{where}: {self.message}"


def _path_sort_key(problem: Problem) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", problem.path)]


class JobDefinitionError(ValueError):
    """An invalid job file; Airflow records it as the import error of the job's loader."""

    def __init__(self, file: str | Path, problems: list[Problem]):
        self.file = str(file)
        self.problems = sorted(problems, key=_path_sort_key)
        count = len(self.problems)
        lines = [f"{self.file}: {count} problem{'s' if count != 1 else ''}"]
        lines += [f"  {p.render()}" for p in self.problems[:MAX_SHOWN_PROBLEMS]]
        if count > MAX_SHOWN_PROBLEMS:
            lines.append(f"  ... and {count - MAX_SHOWN_PROBLEMS} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class RouteRef:
    source: str
    port: str


@dataclass
class ValidatedJob:
    """A job that passed every check, with its graph and derived port schemas."""

    job: Job
    file: Path
    sha256: str
    order: list[str]  # topological, ties in file order
    components: dict[str, Any]
    inputs: dict[str, dict[str, list[RouteRef]]]  # component -> in-port -> routes, in read order
    in_schemas: dict[tuple[str, str], Schema] = field(default_factory=dict)
    out_schemas: dict[tuple[str, str], Schema] = field(default_factory=dict)

    def routed_ports(self, component_id: str) -> set[str]:
        return {port for port, targets in self.components[component_id].routes.items() if targets}

    def chunk_size(self, component_id: str) -> int:
        return self.components[component_id].chunk_size or self.job.chunk_size


# ---- ports ------------------------------------------------------------------------------------


def in_ports(component) -> list[str]:
    if component.type in SOURCE_TYPES:
        return []
    if component.type == "schema_mapping" and component.config.join is not None:
        return ["left", "right"]
    return ["in"]


def out_ports(component) -> tuple[list[str], list[str]]:
    """(required, optional) out-ports in their fixed order."""
    kind = component.type
    if kind in WRITER_TYPES:
        return [], []
    if kind == "filter":
        return ["pass"], ["fail"]
    if kind == "type_conversion":
        return ["out"], ["reject"]
    if kind == "split":
        config = component.config
        return [], [b.port for b in config.branches] + [config.default_port]
    return ["out"], []


def all_out_ports(component) -> list[str]:
    required, optional = out_ports(component)
    return required + optional


# ---- entry points -----------------------------------------------------------------------------


def load_job(path: str | Path) -> ValidatedJob:
    path = Path(path)
    if not path.is_file():
        raise JobDefinitionError(path, [Problem("$", f"job file {path} does not exist")])
    return validate_job_text(path.read_text(encoding="utf-8"), path)


def validate_job_text(text: str, path: str | Path) -> ValidatedJob:
    path = Path(path)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        message = f"invalid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        raise JobDefinitionError(path, [Problem("$", message)]) from None
    problems = _template_problems(raw)
    try:
        job = Job.model_validate(raw)
    except ValidationError as error:
        problems += [_structure_problem(raw, item) for item in error.errors()]
        raise JobDefinitionError(path, problems) from None
    if job.name != path.stem:
        problems.append(Problem("$.name", f"name {job.name!r} must equal the file stem {path.stem!r}"))
    graph_problems, graph = _graph_problems(job.components)
    problems += graph_problems
    validated = ValidatedJob(
        job=job,
        file=path,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        order=graph.order,
        components=graph.components,
        inputs=graph.inputs,
    )
    if not problems:
        problems += _schema_problems(validated)
    if problems:
        raise JobDefinitionError(path, problems)
    return validated


# ---- structure --------------------------------------------------------------------------------


def _json_path(loc: tuple) -> str:
    text = "$"
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _structure_problem(raw: Any, item: dict) -> Problem:
    loc = list(item["loc"])
    # A discriminated union puts the tag into the location: components[2].read_csv.config
    if len(loc) > 2 and loc[0] == "components" and loc[2] in COMPONENT_TYPES:
        del loc[2]
    component = None
    if len(loc) > 1 and loc[0] == "components" and isinstance(loc[1], int):
        try:
            component = raw["components"][loc[1]].get("id")
        except (KeyError, IndexError, TypeError, AttributeError):
            component = None
    kind, last = item["type"], (loc[-1] if loc else "$")
    if kind == "union_tag_invalid":
        loc.append("type")
        message = (
            f"unknown component type {item['input'].get('type')!r}; allowed: {', '.join(COMPONENT_TYPES)}"
        )
    elif kind == "union_tag_not_found":
        loc.append("type")
        message = "missing required field 'type'"
    elif kind == "missing":
        message = f"missing required field {last!r}"
    elif kind == "extra_forbidden":
        message = f"unknown key {last!r}"
    elif kind == "literal_error":
        expected = item.get("ctx", {}).get("expected", "")
        message = f"{item['input']!r} is not one of {expected.replace(' or ', ', ')}"
    else:
        message = item["msg"].removeprefix("Value error, ")
    return Problem(_json_path(tuple(loc)), message, component)


def _template_problems(raw: Any) -> list[Problem]:
    """``{{`` is only allowed in ``path`` and ``read_sql.params`` values."""
    problems: list[Problem] = []

    def walk(value: Any, loc: tuple, templated: bool) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                walk(child, (*loc, key), templated or _is_templated(loc, key, raw))
        elif isinstance(value, list):
            for index, child in enumerate(value):
                walk(child, (*loc, index), templated)
        elif isinstance(value, str) and "{{" in value and not templated:
            problems.append(Problem(_json_path(loc), "'{{' is only allowed in path and read_sql params"))

    walk(raw, (), False)
    return problems


def _is_templated(loc: tuple, key: str, raw: Any) -> bool:
    if len(loc) != 3 or loc[0] != "components" or loc[2] != "config":
        return False
    if key in TEMPLATED_CONFIG_KEYS:
        return True
    try:
        return key == "params" and raw["components"][loc[1]].get("type") == "read_sql"
    except (KeyError, IndexError, TypeError, AttributeError):
        return False


# ---- graph ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Graph:
    """What the graph checks derive for the later steps."""

    components: dict[str, Any]  # by id
    inputs: dict[str, dict[str, list[RouteRef]]]  # component -> in-port -> routes, in read order
    order: list[str]  # topological, ties in file order; empty when there is a cycle


def _graph_problems(components: list) -> tuple[list[Problem], _Graph]:
    """The four graph checks in turn: ids, routes, in-ports, then the whole graph's shape."""
    problems = _duplicate_id_problems(components)
    by_id = {c.id: c for c in components}
    route_problems, incoming, edges = _route_problems(components, by_id)
    in_port_problems, inputs = _in_port_problems(components, incoming)
    shape_problems, order = _shape_problems(components, edges)
    problems += route_problems + in_port_problems + shape_problems
    return problems, _Graph(components=by_id, inputs=inputs, order=order)


def _duplicate_id_problems(components: list) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, component in enumerate(components):
        if component.id in seen:
            problems.append(
                Problem(f"$.components[{index}].id", f"duplicate id {component.id!r}", component.id)
            )
        seen.add(component.id)
    return problems


# (target id, in-port) -> (source index, out-port position, route): sorted, the order an in-port reads in
_Incoming = dict[tuple[str, str], list[tuple[int, int, RouteRef]]]


def _route_problems(
    components: list, by_id: dict[str, Any]
) -> tuple[list[Problem], _Incoming, dict[str, set[str]]]:
    """Every route from a real out-port to a real in-port, every required out-port routed; returns the
    problems, the routes into each in-port and the graph's edges."""
    problems: list[Problem] = []
    incoming: _Incoming = defaultdict(list)
    edges: dict[str, set[str]] = defaultdict(set)
    for index, component in enumerate(components):
        base = f"$.components[{index}]"
        ports = all_out_ports(component)
        for port, targets in component.routes.items():
            if port not in ports:
                allowed = ", ".join(ports) or "none"
                problems.append(
                    Problem(
                        f"{base}.routes.{port}",
                        f"{port!r} is not an out-port; allowed: {allowed}",
                        component.id,
                    )
                )
                continue
            for position, target in enumerate(targets):
                target_id, target_port, refusal = _route_target(target, by_id)
                if refusal is not None:
                    problems.append(Problem(f"{base}.routes.{port}[{position}]", refusal, component.id))
                    continue
                incoming[(target_id, target_port)].append(
                    (index, ports.index(port), RouteRef(component.id, port))
                )
                edges[component.id].add(target_id)
        problems += _unrouted_port_problems(component, base)
    return problems, incoming, edges


def _route_target(target: str, by_id: dict[str, Any]) -> tuple[str, str, str | None]:
    """The component and in-port a route (``<id>`` or ``<id>.<port>``) leads to, and why it is refused
    (None when it is not)."""
    target_id, _, target_port = target.partition(".")
    if target_id not in by_id:
        return target_id, target_port, f"route to missing component {target_id!r}"
    ports_in = in_ports(by_id[target_id])
    if not ports_in:
        return target_id, target_port, f"{target_id!r} is a source and cannot be a target"
    if not target_port:
        if len(ports_in) != 1:
            return (
                target_id,
                target_port,
                f"{target_id!r} has in-ports {', '.join(ports_in)}; name one as '<id>.<port>'",
            )
        target_port = ports_in[0]
    if target_port not in ports_in:
        return (
            target_id,
            target_port,
            f"{target_id!r} has no in-port {target_port!r}; allowed: {', '.join(ports_in)}",
        )
    return target_id, target_port, None


def _unrouted_port_problems(component, base: str) -> list[Problem]:
    required, optional = out_ports(component)
    problems = [
        Problem(f"{base}.routes", f"required out-port {port!r} is not routed", component.id)
        for port in required
        if not component.routes.get(port)
    ]
    if component.type == "split" and not any(component.routes.get(p) for p in optional):
        problems.append(Problem(f"{base}.routes", "split needs at least one routed port", component.id))
    return problems


def _in_port_problems(
    components: list, incoming: _Incoming
) -> tuple[list[Problem], dict[str, dict[str, list[RouteRef]]]]:
    """Each in-port has as many routes as its component takes; returns the problems and each in-port's
    routes in the order they are read (source component, then out-port, in file order)."""
    problems: list[Problem] = []
    inputs: dict[str, dict[str, list[RouteRef]]] = {c.id: {} for c in components}
    for index, component in enumerate(components):
        base = f"$.components[{index}]"
        for port in in_ports(component):
            routes = [ref for *_, ref in sorted(incoming.get((component.id, port), []), key=lambda r: r[:2])]
            inputs[component.id][port] = routes
            if component.type == "merge" and len(routes) < 2:
                problems.append(
                    Problem(base, f"merge needs 2 or more routes into 'in', got {len(routes)}", component.id)
                )
            elif not routes:
                problems.append(Problem(base, f"in-port {port!r} has no route", component.id))
            elif len(routes) > 1 and component.type not in MULTI_ROUTE_TYPES:
                problems.append(
                    Problem(base, f"in-port {port!r} takes one route, got {len(routes)}", component.id)
                )
    return problems, inputs


def _shape_problems(components: list, edges: dict[str, set[str]]) -> tuple[list[Problem], list[str]]:
    """A source, a writer, no cycle, every component reachable from a source; returns the problems and
    the topological order (empty when there is a cycle)."""
    problems: list[Problem] = []
    if not any(c.type in SOURCE_TYPES for c in components):
        problems.append(Problem("$.components", "a job needs at least one source (read_*)"))
    if not any(c.type in WRITER_TYPES for c in components):
        problems.append(Problem("$.components", "a job needs at least one writer (write_*)"))
    ids = [c.id for c in components]
    cycle = _find_cycle(ids, edges)
    if cycle:
        problems.append(Problem("$.components", f"cycle: {' -> '.join(cycle)}"))
        return problems, []
    reachable = _reachable([c.id for c in components if c.type in SOURCE_TYPES], edges)
    for index, component in enumerate(components):
        if component.id not in reachable and component.type not in SOURCE_TYPES:
            problems.append(Problem(f"$.components[{index}]", "not reachable from any source", component.id))
    return problems, _topological_order(ids, edges)


def _find_cycle(ids: list[str], edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ()), key=ids.index):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in ids:
        if node not in state and (found := visit(node)):
            return found
    return None


def _topological_order(ids: list[str], edges: dict[str, set[str]]) -> list[str]:
    indegree = {node: 0 for node in ids}
    for targets in edges.values():
        for target in targets:
            indegree[target] += 1
    order, ready = [], [n for n in ids if indegree[n] == 0]
    while ready:
        node = ready.pop(0)
        order.append(node)
        for target in sorted(edges.get(node, ()), key=ids.index):
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
        ready.sort(key=ids.index)
    return order


def _reachable(starts: list[str], edges: dict[str, set[str]]) -> set[str]:
    seen, todo = set(starts), list(starts)
    while todo:
        for target in edges.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


# ---- schemas ----------------------------------------------------------------------------------


class SchemaProblem(ValueError):
    def __init__(self, suffix: str, message: str):
        super().__init__(message)
        self.suffix = suffix


def declared_schema(columns) -> Schema:
    return tuple(Column(c.name, c.type, c.precision, c.scale, c.nullable) for c in columns)


def as_mapping(schema: Schema) -> dict[str, Column]:
    return {column.name: column for column in schema}


def with_reject_reason(schema: Schema) -> Schema:
    return (*schema, Column(REJECT_REASON_COLUMN, "string"))


def join_input_schema(left: Schema, right: Schema) -> Schema:
    return tuple(Column(f"left.{c.name}", c.type, c.precision, c.scale) for c in left) + tuple(
        Column(f"right.{c.name}", c.type, c.precision, c.scale) for c in right
    )


def _expression_problem(suffix: str, text: str, schema: Schema, condition: bool) -> None:
    try:
        if condition:
            compile_condition(text, as_mapping(schema))
        else:
            compile_expression(text, as_mapping(schema))
    except ExpressionError as error:
        raise SchemaProblem(suffix, str(error)) from None


def _require_columns(suffix: str, names: list[str], schema: Schema) -> None:
    known = as_mapping(schema)
    for position, name in enumerate(names):
        if name not in known:
            raise SchemaProblem(
                f"{suffix}[{position}]", f"unknown column {name!r}; known: {', '.join(known) or 'none'}"
            )


def derive_out_schemas(component, inputs: dict[str, list[Schema]]) -> dict[str, Schema]:
    """Out-port schemas of one component from its in-port schemas; raises SchemaProblem."""
    kind, config = component.type, component.config
    if kind in SOURCE_TYPES:
        return {"out": declared_schema(config.columns)}
    if kind in WRITER_TYPES:
        schema = inputs["in"][0]
        if config.columns is not None:
            _require_columns(".config.columns", config.columns, schema)
        if kind == "write_sql":
            written = tuple(c for c in schema if config.columns is None or c.name in config.columns)
            _require_columns(".config.key_columns", config.key_columns or [], written)
            _require_columns(".config.update_columns", config.update_columns or [], written)
        return {}
    if kind == "merge":
        return {"out": _merge_schema(config, inputs["in"])}
    if kind == "schema_mapping" and config.join is not None:
        return {
            "out": _mapping_schema(config, _join_schema(config.join, inputs["left"][0], inputs["right"][0]))
        }
    schema = inputs["in"][0]
    if kind == "filter":
        _expression_problem(".config.condition", config.condition, schema, condition=True)
        return {"pass": schema, "fail": schema}
    if kind == "split":
        return _split_schemas(config, schema)
    if kind == "type_conversion":
        return {"out": _conversion_schema(config, schema), "reject": with_reject_reason(schema)}
    if kind == "schema_mapping":
        return {"out": _mapping_schema(config, schema)}
    return {"out": _aggregation_schema(config, schema)}


def _split_schemas(config, schema: Schema) -> dict[str, Schema]:
    schemas: dict[str, Schema] = {}
    for position, branch in enumerate(config.branches):
        if branch.port in schemas:
            raise SchemaProblem(f".config.branches[{position}].port", f"duplicate port {branch.port!r}")
        _expression_problem(f".config.branches[{position}].when", branch.when, schema, condition=True)
        schemas[branch.port] = with_reject_reason(schema) if branch.reject_reason else schema
    if config.default_port in schemas:
        raise SchemaProblem(".config.default_port", f"port {config.default_port!r} is also a branch port")
    schemas[config.default_port] = schema
    return schemas


def _conversion_schema(config, schema: Schema) -> Schema:
    known = as_mapping(schema)
    converted: dict[str, Column] = {}
    for position, rule in enumerate(config.rules):
        if rule.column not in known:
            raise SchemaProblem(
                f".config.rules[{position}].column",
                f"unknown column {rule.column!r}; known: {', '.join(known)}",
            )
        if rule.column in converted:
            raise SchemaProblem(f".config.rules[{position}].column", f"second rule for {rule.column!r}")
        column = known[rule.column]
        converted[rule.column] = Column(column.name, rule.to, rule.precision, rule.scale, column.nullable)
    return tuple(converted.get(c.name, c) for c in schema)


def _join_schema(join, left: Schema, right: Schema) -> Schema:
    _require_columns(".config.join.left_on", join.left_on, left)
    _require_columns(".config.join.right_on", join.right_on, right)
    lefts, rights = as_mapping(left), as_mapping(right)
    for position, (a, b) in enumerate(zip(join.left_on, join.right_on, strict=True)):
        x, y = lefts[a], rights[b]
        if not (x.same_type(y) or {x.type, y.type} <= NUMERIC_TYPES):
            raise SchemaProblem(
                f".config.join.right_on[{position}]",
                f"key {a!r} is {x.type_label()} but {b!r} is {y.type_label()}",
            )
    return join_input_schema(left, right)


def _mapping_schema(config, schema: Schema) -> Schema:
    known = as_mapping(schema)
    out: list[Column] = []
    for position, mapped in enumerate(config.columns):
        suffix = f".config.columns[{position}]"
        if mapped.name in {c.name for c in out}:
            raise SchemaProblem(f"{suffix}.name", f"duplicate output column {mapped.name!r}")
        if mapped.expr is None:
            source = mapped.from_ or mapped.name
            if source not in known:
                raise SchemaProblem(suffix, f"unknown column {source!r}; known: {', '.join(known)}")
            column = known[source]
            out.append(Column(mapped.name, column.type, column.precision, column.scale))
            continue
        try:
            compiled = compile_expression(mapped.expr, known)
        except ExpressionError as error:
            raise SchemaProblem(f"{suffix}.expr", str(error)) from None
        if mapped.type is not None:
            out.append(Column(mapped.name, mapped.type, mapped.precision, mapped.scale))
        elif compiled.type == "null":
            raise SchemaProblem(f"{suffix}.type", "the expression is always null; give a type")
        elif compiled.type == "decimal":
            raise SchemaProblem(f"{suffix}.type", "a decimal expression needs type, precision and scale")
        else:
            out.append(Column(mapped.name, compiled.type))
    return tuple(out)


def _aggregation_schema(config, schema: Schema) -> Schema:
    _require_columns(".config.group_by", config.group_by, schema)
    known = as_mapping(schema)
    out = [
        Column(known[name].name, known[name].type, known[name].precision, known[name].scale)
        for name in config.group_by
    ]
    for position, aggregate in enumerate(config.aggregates):
        suffix = f".config.aggregates[{position}]"
        if aggregate.name in {c.name for c in out}:
            raise SchemaProblem(f"{suffix}.name", f"duplicate output column {aggregate.name!r}")
        if aggregate.column is None:
            out.append(Column(aggregate.name, "integer"))
            continue
        if aggregate.column not in known:
            raise SchemaProblem(
                f"{suffix}.column", f"unknown column {aggregate.column!r}; known: {', '.join(known)}"
            )
        column, function = known[aggregate.column], aggregate.function
        if function == "count":
            out.append(Column(aggregate.name, "integer"))
        elif function in ("min", "max"):
            out.append(Column(aggregate.name, column.type, column.precision, column.scale))
        elif column.type not in NUMERIC_TYPES:
            raise SchemaProblem(
                f"{suffix}.column", f"{function} needs a numeric column, {column.name!r} is {column.type}"
            )
        elif column.type == "decimal":
            out.append(Column(aggregate.name, "decimal", 38, column.scale))
        elif function == "avg":
            out.append(Column(aggregate.name, "float"))
        else:
            out.append(Column(aggregate.name, column.type))
    return tuple(out)


def _merge_schema(config, schemas: list[Schema]) -> Schema:
    merged = list(schemas[0])
    for position, schema in enumerate(schemas[1:], start=1):
        known = as_mapping(tuple(merged))
        names = {c.name for c in schema}
        if config.missing_columns == "error" and names != set(known):
            raise SchemaProblem(
                ".config.missing_columns",
                f"port schema mismatch: input {position + 1} has columns ({describe_schema(schema)}) "
                f"but input 1 has ({describe_schema(schemas[0])})",
            )
        for column in schema:
            if column.name not in known:
                merged.append(Column(column.name, column.type, column.precision, column.scale))
            elif not known[column.name].same_type(column):
                raise SchemaProblem(
                    ".config",
                    f"port schema mismatch: column {column.name!r} is {known[column.name].type_label()} "
                    f"in input 1 but {column.type_label()} in input {position + 1}",
                )
    return tuple(Column(c.name, c.type, c.precision, c.scale) for c in merged)


def _same_schema(a: Schema, b: Schema) -> bool:
    return len(a) == len(b) and all(x.name == y.name and x.same_type(y) for x, y in zip(a, b, strict=True))


def _schema_problems(validated: ValidatedJob) -> list[Problem]:
    problems: list[Problem] = []
    index_of = {c.id: i for i, c in enumerate(validated.job.components)}
    for component_id in validated.order:
        component = validated.components[component_id]
        base = f"$.components[{index_of[component_id]}]"
        inputs: dict[str, list[Schema]] = {}
        blocked = False
        for port, routes in validated.inputs[component_id].items():
            schemas = []
            for ref in routes:
                schema = validated.out_schemas.get((ref.source, ref.port))
                if schema is None:
                    blocked = True
                    break
                schemas.append(schema)
            inputs[port] = schemas
            if blocked:
                break
            if component.type in WRITER_TYPES and any(not _same_schema(schemas[0], s) for s in schemas[1:]):
                first, other = (
                    routes[0],
                    next(r for r, s in zip(routes, schemas, strict=True) if not _same_schema(schemas[0], s)),
                )
                other_schema = validated.out_schemas[(other.source, other.port)]
                problems.append(
                    Problem(
                        base,
                        f"port schema mismatch on 'in': {first.source}.{first.port} gives ({describe_schema(schemas[0])}) "
                        f"but {other.source}.{other.port} gives ({describe_schema(other_schema)})",
                        component_id,
                    )
                )
                blocked = True
                break
            if schemas:
                validated.in_schemas[(component_id, port)] = schemas[0]
        if blocked:
            continue
        try:
            for port, schema in derive_out_schemas(component, inputs).items():
                validated.out_schemas[(component_id, port)] = schema
        except SchemaProblem as problem:
            problems.append(Problem(base + problem.suffix, str(problem), component_id))
    return problems
