"""Pydantic models of a job file: the structure layer of validation and the source of the JSON Schema.

Every model forbids unknown keys, so a host, user or password in a job is an error, and every
accepted field has an effect. Semantic rules (graph, schemas, expressions) live in ``validation``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

TypeName = Literal["string", "integer", "float", "decimal", "boolean", "date", "timestamp"]
SCHEDULE_PRESETS = ("@hourly", "@daily", "@weekly", "@monthly")
SCHEDULE_FIELDS = ("schedule", "every", "once_at")
MIN_EVERY_SECONDS = 60
# a date and a time, optional seconds/fraction and offset; the rest is checked by datetime.fromisoformat
ONCE_AT_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?$"
TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}\.[A-Za-z_][A-Za-z0-9_]{0,62}$"
COLUMN_NAME = Annotated[str, Field(min_length=1, max_length=63)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _check_decimal(type_name: str | None, precision: int | None, scale: int | None) -> None:
    if type_name == "decimal":
        if precision is None or scale is None:
            raise ValueError("decimal needs precision and scale")
        if scale > precision:
            raise ValueError("scale must not exceed precision")


def _check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone") from None
    return name


def _check_date_format(fmt: str) -> str:
    """A format that cannot parse what it formats (a bad directive) would reject every row."""
    sample = dt.datetime(2001, 2, 3, 4, 5, 6)
    try:
        dt.datetime.strptime(sample.strftime(fmt), fmt)
    except ValueError as error:
        raise ValueError(f"format {fmt!r} is not a usable strptime format: {error}") from None
    return fmt


class ColumnSpec(Strict):
    name: COLUMN_NAME = Field(title="Name", description="Column name in the job's port schemas.")
    type: TypeName = Field("string", title="Type", description="Column type.")
    precision: int | None = Field(None, ge=1, le=38, title="Precision", description="Decimal digits.")
    scale: int | None = Field(None, ge=0, le=38, title="Scale", description="Decimal digits after the point.")
    nullable: bool = Field(True, title="Nullable", description="False makes a null a bad line/record.")
    source: str | None = Field(
        None, title="Source", description="CSV header or dotted JSON path; defaults to the name."
    )

    @model_validator(mode="after")
    def _decimal(self) -> ColumnSpec:
        _check_decimal(self.type, self.precision, self.scale)
        return self


_PATH = Field(
    title="Path",
    description="File path or glob, templated (e.g. {{ ds_nodash }}); relative to the environment's data_root.",
)
_CONN_FILE = Field(
    None, title="Connection", description="Logical name of an 'fs' connection whose extra 'path' is the root."
)
_MISSING_FILE = Field("fail", title="Missing file", description="fail, or read as empty.")
_WRITER_COLUMNS = Field(
    None, title="Columns", description="Columns to write, in order; null writes every incoming column."
)
_IF_EXISTS = Field("overwrite", title="If exists", description="Replace an existing file, or fail.")
Delimiter = Literal[",", ";", "\t", "|"]
DURATION_PATTERN = r"^[1-9][0-9]*[smhd]$"
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """``"90s"``, ``"5m"``, ``"6h"``, ``"1d"`` in seconds."""
    return int(text[:-1]) * _DURATION_UNITS[text[-1]]


class WaitForInput(Strict):
    timeout: str = Field(
        "6h",
        pattern=DURATION_PATTERN,
        title="Timeout",
        description="How long to wait for the input (e.g. 90s, 30m, 6h, 1d); then the run fails naming the file.",
    )
    poke_interval: str = Field(
        "5m",
        pattern=DURATION_PATTERN,
        title="Poke interval",
        description="Time between checks; the wait holds no worker slot in between (reschedule mode).",
    )

    @model_validator(mode="after")
    def _interval_within_timeout(self) -> WaitForInput:
        if duration_seconds(self.poke_interval) > duration_seconds(self.timeout):
            raise ValueError("poke_interval must not exceed timeout")
        return self


_WAIT_FOR_INPUT = Field(
    None,
    title="Wait for input",
    description=(
        "Wait for the input file (a sensor task before the reader) instead of failing when it is not "
        "there yet; null = do not wait. Needs missing_file: fail."
    ),
)


def _check_wait(config: Any) -> Any:
    if config.wait_for_input is not None and config.missing_file != "fail":
        raise ValueError("wait_for_input needs missing_file: fail (an empty read would never wait)")
    return config


class ReadCsvConfig(Strict):
    path: str = _PATH
    conn: str | None = _CONN_FILE
    columns: list[ColumnSpec] = Field(min_length=1, title="Columns", description="Declared columns (string).")
    delimiter: Delimiter = Field(",", title="Delimiter", description="Field separator.")
    header: bool = Field(True, title="Header", description="First line is a header; false = by position.")
    null_values: list[str] = Field([""], title="Null values", description="Texts read as null.")
    extra_columns: Literal["fail", "ignore"] = Field("fail", title="Extra columns", description="Undeclared.")
    missing_file: Literal["fail", "empty"] = _MISSING_FILE
    on_bad_lines: Literal["fail", "drop"] = Field(
        "fail", title="On bad lines", description="Fail, or drop and count as rejected (malformed_line)."
    )
    wait_for_input: WaitForInput | None = _WAIT_FOR_INPUT

    @model_validator(mode="after")
    def _wait_needs_fail(self) -> ReadCsvConfig:
        return _check_wait(self)

    @field_validator("columns")
    @classmethod
    def _strings_only(cls, columns: list[ColumnSpec]) -> list[ColumnSpec]:
        for column in columns:
            if column.type != "string":
                raise ValueError(f"CSV column {column.name!r} must be string; use type_conversion")
        return columns


class ReadJsonConfig(Strict):
    path: str = _PATH
    conn: str | None = _CONN_FILE
    missing_file: Literal["fail", "empty"] = _MISSING_FILE
    format: Literal["auto", "array", "ndjson"] = Field(
        "auto", title="Format", description="auto = NDJSON for .jsonl/.ndjson, else array."
    )
    columns: list[ColumnSpec] = Field(min_length=1, title="Columns", description="Declared columns.")
    extra_fields: Literal["ignore", "fail"] = Field("ignore", title="Extra fields", description="Undeclared.")
    on_bad_records: Literal["fail", "drop"] = Field(
        "fail", title="On bad records", description="Fail, or drop and count as rejected (bad_record)."
    )
    wait_for_input: WaitForInput | None = _WAIT_FOR_INPUT

    @model_validator(mode="after")
    def _wait_needs_fail(self) -> ReadJsonConfig:
        return _check_wait(self)


class ReadSqlConfig(Strict):
    conn: str = Field(title="Connection", description="Logical name of a postgres connection.")
    query: str | None = Field(
        None, title="Query", description="SELECT with %(name)s parameters; not templated."
    )
    table: str | None = Field(None, pattern=TABLE_PATTERN, title="Table", description="schema.table to read.")
    params: dict[str, str | int | float | bool | None] = Field(
        {}, title="Parameters", description="Bound as %(name)s; values are templated."
    )
    columns: list[ColumnSpec] = Field(min_length=1, title="Columns", description="Columns, matched by name.")

    @model_validator(mode="after")
    def _one_source(self) -> ReadSqlConfig:
        if (self.query is None) == (self.table is None):
            raise ValueError("exactly one of query or table is required")
        return self


class FilterConfig(Strict):
    condition: str = Field(title="Condition", description="Boolean expression; true goes to 'pass'.")


class SplitBranch(Strict):
    port: str = Field(pattern=r"^[a-z][a-z0-9_]*$", title="Port", description="Out-port of this branch.")
    when: str = Field(title="When", description="Boolean expression; the first true branch wins.")
    reject_reason: str | None = Field(
        None, title="Reject reason", description="Count the branch's rows as rejected with this reason."
    )


class SplitConfig(Strict):
    branches: list[SplitBranch] = Field(min_length=1, title="Branches", description="Checked in order.")
    default_port: str = Field(
        "default", pattern=r"^[a-z][a-z0-9_]*$", title="Default port", description="Rows no branch took."
    )


OnError = Literal["fail", "null", "reject"]


class ConversionRule(Strict):
    column: str = Field(title="Column", description="Input column to convert.")
    to: TypeName = Field(title="To", description="Target type.")
    precision: int | None = Field(None, ge=1, le=38, title="Precision", description="For decimal.")
    scale: int | None = Field(None, ge=0, le=38, title="Scale", description="For decimal.")
    format: str | None = Field(None, title="Format", description="strftime format for date (%Y-%m-%d).")
    timezone: str = Field("UTC", title="Timezone", description="Zone of timestamps without an offset.")
    on_error: OnError | None = Field(
        None, title="On error", description="Overrides the component's on_error."
    )

    @model_validator(mode="after")
    def _decimal(self) -> ConversionRule:
        _check_decimal(self.to, self.precision, self.scale)
        if self.format is not None:
            if self.to != "date":
                raise ValueError("format applies only to 'to: date' (timestamps are ISO-8601)")
            _check_date_format(self.format)
        _check_timezone(self.timezone)
        return self


class TypeConversionConfig(Strict):
    rules: list[ConversionRule] = Field(min_length=1, title="Rules", description="One rule per column.")
    on_error: OnError = Field("fail", title="On error", description="fail, store null, or send to 'reject'.")
    null_values: list[str] = Field([""], title="Null values", description="Texts converted to null.")
    trim: bool = Field(True, title="Trim", description="Strip spaces before parsing.")


class MappedColumn(Strict):
    name: COLUMN_NAME = Field(title="Name", description="Output column name.")
    from_: str | None = Field(None, alias="from", title="From", description="Input column; defaults to name.")
    expr: str | None = Field(None, title="Expression", description="Derives the column instead of 'from'.")
    type: TypeName | None = Field(None, title="Type", description="Cast of a derived column.")
    precision: int | None = Field(None, ge=1, le=38, title="Precision", description="For decimal.")
    scale: int | None = Field(None, ge=0, le=38, title="Scale", description="For decimal.")

    @model_validator(mode="after")
    def _from_or_expr(self) -> MappedColumn:
        if self.from_ is not None and self.expr is not None:
            raise ValueError("give either 'from' or 'expr', not both")
        if self.expr is None and self.type is not None:
            raise ValueError("'type' applies only to a derived column ('expr')")
        _check_decimal(self.type, self.precision, self.scale)
        return self


class JoinSpec(Strict):
    how: Literal["inner", "left", "right", "full"] = Field("inner", title="How", description="Join type.")
    left_on: list[str] = Field(min_length=1, title="Left keys", description="Columns of 'left'.")
    right_on: list[str] = Field(min_length=1, title="Right keys", description="Columns of 'right'.")
    max_right_rows: int = Field(
        2_000_000, ge=1, title="Max right rows", description="Hard limit on the in-memory right side."
    )

    @model_validator(mode="after")
    def _same_length(self) -> JoinSpec:
        if len(self.left_on) != len(self.right_on):
            raise ValueError("left_on and right_on need the same number of columns")
        return self


class SchemaMappingConfig(Strict):
    columns: list[MappedColumn] = Field(
        min_length=1, title="Columns", description="Output columns, in order."
    )
    join: JoinSpec | None = Field(None, title="Join", description="Join the 'left' and 'right' in-ports.")


class AggregateSpec(Strict):
    name: COLUMN_NAME = Field(title="Name", description="Output column.")
    function: Literal["count", "sum", "min", "max", "avg"] = Field(title="Function", description="Aggregate.")
    column: str | None = Field(
        None, title="Column", description="Input column; count without it counts rows."
    )

    @model_validator(mode="after")
    def _column(self) -> AggregateSpec:
        if self.column is None and self.function != "count":
            raise ValueError(f"{self.function} needs a column")
        return self


class AggregationConfig(Strict):
    group_by: list[str] = Field([], title="Group by", description="Key columns; [] = one global group.")
    aggregates: list[AggregateSpec] = Field(
        min_length=1, title="Aggregates", description="Output aggregates."
    )
    max_groups: int = Field(
        1_000_000, ge=1, title="Max groups", description="Hard limit on groups in memory."
    )


class MergeConfig(Strict):
    missing_columns: Literal["error", "fill_null"] = Field(
        "error", title="Missing columns", description="Inputs must match, or missing columns become null."
    )


class WriteCsvConfig(Strict):
    path: str = _PATH
    conn: str | None = _CONN_FILE
    delimiter: Delimiter = Field(",", title="Delimiter", description="Field separator.")
    header: bool = Field(True, title="Header", description="Write a header line.")
    null_value: str = Field("", title="Null value", description="Text written for null.")
    if_exists: Literal["overwrite", "fail"] = _IF_EXISTS
    columns: list[str] | None = _WRITER_COLUMNS


class WriteJsonConfig(Strict):
    path: str = _PATH
    conn: str | None = _CONN_FILE
    if_exists: Literal["overwrite", "fail"] = _IF_EXISTS
    format: Literal["ndjson", "array"] = Field("ndjson", title="Format", description="NDJSON or one array.")
    nest: bool = Field(False, title="Nest", description="Dotted names become nested objects.")
    columns: list[str] | None = _WRITER_COLUMNS


class WriteSqlConfig(Strict):
    conn: str = Field(title="Connection", description="Logical name of a postgres connection.")
    table: str = Field(pattern=TABLE_PATTERN, title="Table", description="schema.table; must exist.")
    mode: Literal["append", "upsert", "replace"] = Field("append", title="Mode", description="Write mode.")
    key_columns: list[str] | None = Field(None, title="Key columns", description="Upsert conflict key.")
    update_columns: list[str] | None = Field(
        None, title="Update columns", description="Updated on conflict; null = every non-key column."
    )
    duplicate_keys: Literal["fail", "keep_last"] = Field(
        "fail", title="Duplicate keys", description="Same key twice in one run's input."
    )
    statement_timeout_seconds: int | None = Field(
        None, ge=1, title="Statement timeout", description="Seconds."
    )
    columns: list[str] | None = _WRITER_COLUMNS

    @model_validator(mode="after")
    def _keys(self) -> WriteSqlConfig:
        if self.mode == "upsert" and not self.key_columns:
            raise ValueError("upsert needs key_columns")
        if self.mode != "upsert" and (self.key_columns or self.update_columns):
            raise ValueError("key_columns and update_columns apply only to upsert")
        return self


_ID = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", title="Id", description="Unique; the Airflow task_id.")
_ROUTES = Field({}, title="Routes", description="Out-port -> targets '<id>' or '<id>.<in_port>'.")


class ComponentBase(Strict):
    id: str = _ID
    description: str = Field("", title="Description", description="Free text.")
    routes: dict[str, list[str]] = _ROUTES
    chunk_size: int | None = Field(
        None, ge=1, le=1_000_000, title="Chunk size", description="Overrides the job."
    )
    retries: int | None = Field(None, ge=0, le=10, title="Retries", description="Overrides the job.")
    ui: dict[str, Any] | None = Field(
        None, title="UI", description="Kept for editors; ignored by the engine."
    )


def _ports(inputs: list[str], outputs: list[str], dynamic: str | None = None) -> dict[str, Any]:
    ports: dict[str, Any] = {"in": inputs, "out": outputs}
    if dynamic:
        ports["dynamic"] = dynamic
    return {"x-ports": ports}


class ReadCsv(ComponentBase):
    model_config = ConfigDict(json_schema_extra=_ports([], ["out"]))
    type: Literal["read_csv"]
    config: ReadCsvConfig


class ReadJson(ComponentBase):
    model_config = ConfigDict(json_schema_extra=_ports([], ["out"]))
    type: Literal["read_json"]
    config: ReadJsonConfig


class ReadSql(ComponentBase):
    model_config = ConfigDict(json_schema_extra=_ports([], ["out"]))
    type: Literal["read_sql"]
    config: ReadSqlConfig


class Filter(ComponentBase):
    model_config = ConfigDict(json_schema_extra=_ports(["in"], ["pass", "fail"]))
    type: Literal["filter"]
    config: FilterConfig


class Split(ComponentBase):
    model_config = ConfigDict(json_schema_extra=_ports(["in"], [], "branches[].port, default_port"))
    type: Literal["split"]
    config: SplitConfig


class TypeConversion(ComponentBase):
    model_config = ConfigDict(json_schema_extra=_ports(["in"], ["out", "reject"]))
    type: Literal["type_conversion"]
    config: TypeConversionConfig


class SchemaMapping(ComponentBase):
    model_config = ConfigDict(json_schema_extra=_ports(["in"], ["out"], "with join: in-ports left, right"))
    type: Literal["schema_mapping"]
    config: SchemaMappingConfig


class Aggregation(ComponentBase):
    model_config = ConfigDict(json_schema_extra=_ports(["in"], ["out"]))
    type: Literal["aggregation"]
    config: AggregationConfig


class Merge(ComponentBase):
    model_config = ConfigDict(json_schema_extra=_ports(["in"], ["out"]))
    type: Literal["merge"]
    config: MergeConfig


class WriteCsv(ComponentBase):
    model_config = ConfigDict(json_schema_extra=_ports(["in"], []))
    type: Literal["write_csv"]
    config: WriteCsvConfig


class WriteJson(ComponentBase):
    model_config = ConfigDict(json_schema_extra=_ports(["in"], []))
    type: Literal["write_json"]
    config: WriteJsonConfig


class WriteSql(ComponentBase):
    model_config = ConfigDict(json_schema_extra=_ports(["in"], []))
    type: Literal["write_sql"]
    config: WriteSqlConfig


Component = Annotated[
    ReadCsv
    | ReadJson
    | ReadSql
    | Filter
    | Split
    | TypeConversion
    | SchemaMapping
    | Aggregation
    | Merge
    | WriteCsv
    | WriteJson
    | WriteSql,
    Field(discriminator="type"),
]
COMPONENT_TYPES = (
    "read_csv",
    "read_json",
    "read_sql",
    "write_csv",
    "write_json",
    "write_sql",
    "filter",
    "split",
    "type_conversion",
    "schema_mapping",
    "aggregation",
    "merge",
)


class Job(Strict):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        title="Declarative job",
        json_schema_extra={
            "description": "A job file: components wired by routes; one file = one Airflow DAG.",
            # schedule, every and once_at: at most one non-null (the models say which in their error)
            "allOf": [
                {"not": {"required": [a, b], "properties": {a: {"type": "string"}, b: {"type": "string"}}}}
                for a, b in (("schedule", "every"), ("schedule", "once_at"), ("every", "once_at"))
            ],
        },
    )

    schema_uri: str | None = Field(
        None, alias="$schema", title="$schema", description="Accepted and ignored."
    )
    format_version: Literal[1] = Field(title="Format version", description="Only 1.")
    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]{2,62}$", title="Name", description="The dag_id; must equal the file stem."
    )
    description: str = Field("", title="Description", description="DAG description and doc_md.")
    owner: str = Field("data-platform", min_length=1, title="Owner", description="DAG owner.")
    tags: list[str] = Field([], title="Tags", description="DAG tags; 'declarative-job' is always added.")
    schedule: str | None = Field(
        None,
        title="Schedule",
        description=(
            "5-field cron, @hourly/@daily/@weekly/@monthly, or null (manual, unless every or once_at is "
            "set). At most one of schedule, every and once_at."
        ),
    )
    every: str | None = Field(
        None,
        pattern=DURATION_PATTERN,
        title="Every",
        description=(
            "Run at a fixed interval, e.g. 15m, 2h, 1d (at least 1m), an Airflow timedelta schedule: first "
            "when the DAG is unpaused (or at midnight of start_date if later), then one interval after "
            "the previous run; with catchup, from midnight of start_date on. At most one of schedule, "
            "every and once_at."
        ),
    )
    once_at: str | None = Field(
        None,
        pattern=ONCE_AT_PATTERN,
        title="Once at",
        description=(
            "Run once, at this ISO-8601 timestamp (e.g. 2025-03-02T04:30:00; read in timezone when it has "
            "no offset), or as soon as the DAG is unpaused if that moment has passed (Airflow's @once, "
            "whatever catchup says). At most one of schedule, every and once_at."
        ),
    )
    on_asset: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9+.-]*://\S+$",
        title="On asset",
        description=(
            "Run after each event of this Asset (its URI, e.g. x-etlkit://postgres_visits/visits: every "
            "successful visits load), instead of schedule, every or once_at."
        ),
    )
    timezone: str = Field("UTC", title="Timezone", description="IANA zone of the schedule.")
    start_date: dt.date | None = Field(
        None, title="Start date", description="Required with schedule or every; not allowed with once_at."
    )
    catchup: bool = Field(False, title="Catchup", description="Create runs for past intervals.")
    max_active_runs: int = Field(1, ge=1, title="Max active runs", description="Further runs wait queued.")
    retries: int = Field(2, ge=0, le=10, title="Retries", description="Retries of every component task.")
    retry_delay_seconds: int = Field(300, ge=0, title="Retry delay", description="Seconds before a retry.")
    retry_exponential_backoff: bool = Field(
        True, title="Exponential backoff", description="Double each delay."
    )
    max_retry_delay_seconds: int = Field(3600, ge=0, title="Max retry delay", description="Cap in seconds.")
    task_timeout_minutes: int | None = Field(
        None, ge=1, title="Task timeout", description="execution_timeout of component tasks."
    )
    chunk_size: int = Field(
        50_000, ge=1, le=1_000_000, title="Chunk size", description="Most rows per batch."
    )
    execution: Literal["tasks", "fused"] = Field(
        "tasks",
        title="Execution",
        description=(
            "tasks: one Airflow task per component, data staged between them (retry, logs and metrics "
            "per component; each task may run on another worker). fused: one task, `_run`, runs every "
            "component at once in threads, batches passed in memory (joins and merges read staging): "
            "no per-task start-up and no staging round trip, so several times faster on short jobs, "
            "but a failure reruns the whole job and one worker holds it all."
        ),
    )
    components: list[Component] = Field(
        min_length=1, max_length=100, title="Components", description="Readers, transforms and writers."
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, schedule: str | None) -> str | None:
        if schedule is None or schedule in SCHEDULE_PRESETS:
            return schedule
        if len(schedule.split()) != 5 or not croniter.is_valid(schedule):
            raise ValueError(f"{schedule!r} is not a 5-field cron or one of {', '.join(SCHEDULE_PRESETS)}")
        return schedule

    @field_validator("every")
    @classmethod
    def _every(cls, every: str | None, info: ValidationInfo) -> str | None:
        if every is None:
            return every
        _only_schedule("every", info.data)
        if duration_seconds(every) < MIN_EVERY_SECONDS:
            raise ValueError(f"every {every!r} is shorter than 1m (each run starts one task per component)")
        return every

    @model_validator(mode="after")
    def _fused_has_one_retry_setting(self) -> Job:
        if self.execution == "fused":
            for component in self.components:
                if component.retries is not None:
                    raise ValueError(
                        f"component {component.id!r} sets retries, which apply to its own task; with execution "
                        "fused the whole job is one task (_run): set the job's retries instead"
                    )
        return self

    @field_validator("once_at")
    @classmethod
    def _once_at(cls, once_at: str | None, info: ValidationInfo) -> str | None:
        if once_at is None:
            return once_at
        _only_schedule("once_at", info.data)
        try:
            dt.datetime.fromisoformat(once_at)
        except ValueError:
            raise ValueError(f"once_at {once_at!r} is not an ISO-8601 timestamp") from None
        return once_at

    @field_validator("on_asset")
    @classmethod
    def _on_asset(cls, on_asset: str | None, info: ValidationInfo) -> str | None:
        others = [f for f in SCHEDULE_FIELDS if on_asset is not None and info.data.get(f) is not None]
        if others:
            raise ValueError(f"on_asset cannot be combined with {' and '.join(others)}: set one of them")
        return on_asset

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, name: str) -> str:
        return _check_timezone(name)

    @model_validator(mode="after")
    def _start_date(self) -> Job:
        for name in ("schedule", "every"):
            if getattr(self, name) is not None and self.start_date is None:
                raise ValueError(f"start_date is required when {name} is set")
        if self.once_at is not None and self.start_date is not None:
            raise ValueError(
                "start_date has no effect with once_at (the run's moment is its start): remove it"
            )
        return self

    def every_timedelta(self) -> dt.timedelta | None:
        return dt.timedelta(seconds=duration_seconds(self.every)) if self.every is not None else None

    def once_at_datetime(self) -> dt.datetime | None:
        """``once_at`` as an aware datetime, in ``timezone`` when the text has no offset."""
        if self.once_at is None:
            return None
        moment = dt.datetime.fromisoformat(self.once_at)
        return moment if moment.tzinfo else moment.replace(tzinfo=zoneinfo.ZoneInfo(self.timezone))


def _only_schedule(name: str, earlier: dict[str, Any]) -> None:
    """``schedule``, ``every`` and ``once_at`` each define the DAG's timetable: at most one may be set."""
    others = [f"{field} ({earlier[field]!r})" for field in SCHEDULE_FIELDS if earlier.get(field) is not None]
    if others:
        raise ValueError(
            f"{name} cannot be combined with {' and '.join(others)}: set one of {', '.join(SCHEDULE_FIELDS)}"
        )
