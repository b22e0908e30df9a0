"""OpenLineage reports of the pipelines' operators (``get_openlineage_facets_on_complete``).

An operator notes during ``execute`` what it read and wrote as plain :class:`DatasetRef` values
(connection id, name, row count): no lookup, no import of the provider. Only when the OpenLineage
listener asks for the facets (lineage on) are the connections resolved into namespaces and the
PostgreSQL columns read from ``information_schema``. With lineage off (no transport configured,
or ``[openlineage] disabled``) the provider's plugin registers no listener and nothing here runs.

Namespaces and names follow the OpenLineage naming conventions:

* PostgreSQL: ``postgres://{host}:{port}``, ``{database}.{schema}.{table}``;
* SFTP: ``sftp://{host}:{port}``, the absolute path of the file;
* Elasticsearch: ``elasticsearch://{host}:{port}``, the index (or alias) name;
* HTTP APIs: ``{scheme}://{host}[:{port}]``, the endpoint's path.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

POSTGRES = "postgres"
SFTP = "sftp"
ELASTICSEARCH = "elasticsearch"
HTTP = "http"

DEFAULT_PORTS = {POSTGRES: 5432, SFTP: 22, ELASTICSEARCH: 9200}


@dataclass(frozen=True)
class DatasetRef:
    """One dataset as an operator knows it: the system's Airflow connection and the dataset's name.

    ``name`` is ``schema.table`` for PostgreSQL (the database comes from the connection), the path
    for SFTP and HTTP, the index for Elasticsearch. ``fields`` are ``(column, type)`` pairs; left
    empty for PostgreSQL they are read from ``information_schema`` when lineage is on.
    """

    kind: str
    conn_id: str
    name: str
    rows: int | None = None
    fields: tuple[tuple[str, str], ...] = ()


@dataclass
class LineageNote:
    inputs: list[DatasetRef] = field(default_factory=list)
    outputs: list[DatasetRef] = field(default_factory=list)


class LineageReporting:
    """Mixin for operators: ``note_lineage`` in ``execute``, the provider calls the facet method."""

    _lineage_note: LineageNote | None = None

    def note_lineage(self, note: LineageNote) -> None:
        self._lineage_note = note

    def get_openlineage_facets_on_complete(self, task_instance):
        if self._lineage_note is None:
            return None
        return operator_lineage(self._lineage_note)


@dataclass(frozen=True)
class Endpoint:
    namespace: str
    database: str | None = None


def resolve_endpoint(kind: str, conn_id: str) -> Endpoint:
    from airflow.sdk import BaseHook

    if kind == FILE:
        return Endpoint(FILE)
    connection = BaseHook.get_connection(conn_id)
    host = connection.host or "localhost"
    if kind == HTTP:
        return Endpoint(http_namespace(host, connection.schema, connection.port))
    if kind == ELASTICSEARCH and "://" in host:
        parsed = urlsplit(host)
        return Endpoint(f"{ELASTICSEARCH}://{parsed.hostname}:{parsed.port or connection.port or 9200}")
    port = connection.port or DEFAULT_PORTS[kind]
    database = connection.schema if kind == POSTGRES else None
    return Endpoint(f"{kind}://{host}:{port}", database)


def http_namespace(host: str, scheme: str | None, port: int | None) -> str:
    """``https://host[:port]``: an HTTP connection's host may itself carry the scheme and port."""
    if "://" in host:
        parsed = urlsplit(host)
        netloc = parsed.hostname + (f":{parsed.port}" if parsed.port else "")
        return f"{parsed.scheme}://{netloc}"
    return f"{scheme or 'https'}://{host}" + (f":{port}" if port else "")


def dataset_name(ref: DatasetRef, endpoint: Endpoint) -> str:
    if ref.kind == POSTGRES:
        return f"{endpoint.database}.{ref.name}"
    return ref.name


def postgres_columns(conn_id: str, qualified: list[str]) -> dict[str, tuple[tuple[str, str], ...]]:
    """``{schema.table: ((column, type), ...)}`` in column order, from ``information_schema``."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    pairs = [name.split(".", 1) for name in qualified]
    with PostgresHook(postgres_conn_id=conn_id).get_conn() as conn:
        rows = conn.execute(
            "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
            " WHERE (table_schema, table_name) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
            " ORDER BY table_schema, table_name, ordinal_position",
            ([s for s, _ in pairs], [t for _, t in pairs]),
        ).fetchall()
    columns: dict[str, list[tuple[str, str]]] = {}
    for schema, table, column, data_type in rows:
        columns.setdefault(f"{schema}.{table}", []).append((column, data_type))
    return {name: tuple(found) for name, found in columns.items()}


def _fill_postgres_fields(refs: list[DatasetRef]) -> list[DatasetRef]:
    missing: dict[str, list[str]] = {}
    for ref in refs:
        if ref.kind == POSTGRES and not ref.fields and "." in ref.name:
            missing.setdefault(ref.conn_id, []).append(ref.name)
    found: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
    for conn_id, names in missing.items():
        try:
            for name, columns in postgres_columns(conn_id, names).items():
                found[(conn_id, name)] = columns
        except Exception as error:  # lineage must never fail the task: report without a schema
            log.warning("lineage: columns of %s not read: %s", conn_id, type(error).__name__)
    return [
        DatasetRef(r.kind, r.conn_id, r.name, r.rows, found.get((r.conn_id, r.name), r.fields)) for r in refs
    ]


def operator_lineage(note: LineageNote) -> Any:
    """The provider's ``OperatorLineage`` of a note: resolved namespaces, schema and row-count facets."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset, schema_dataset

    endpoints: dict[tuple[str, str], Endpoint] = {}

    def endpoint(ref: DatasetRef) -> Endpoint:
        key = (ref.kind, ref.conn_id)
        if key not in endpoints:
            endpoints[key] = resolve_endpoint(ref.kind, ref.conn_id)
        return endpoints[key]

    def facets(ref: DatasetRef) -> dict[str, Any]:
        if not ref.fields:
            return {}
        fields = [schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in ref.fields]
        return {"schema": schema_dataset.SchemaDatasetFacet(fields=fields)}

    inputs = [
        InputDataset(namespace=endpoint(r).namespace, name=dataset_name(r, endpoint(r)), facets=facets(r))
        for r in _fill_postgres_fields(note.inputs)
    ]
    outputs = []
    for ref in _fill_postgres_fields(note.outputs):
        statistics = {}
        if ref.rows is not None:
            statistics["outputStatistics"] = (
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=ref.rows)
            )
        outputs.append(
            OutputDataset(
                namespace=endpoint(ref).namespace,
                name=dataset_name(ref, endpoint(ref)),
                facets=facets(ref),
                outputFacets=statistics,
            )
        )
    return OperatorLineage(inputs=inputs, outputs=outputs)


# -- what each pipeline's operators read and write ------------------------------------------------


def visits_lineage(
    config: Any, outcomes: list[dict[str, Any]], *, sftp_conn_id: str, postgres_conn_id: str
) -> LineageNote:
    """The report files this try read (SFTP) → statistics, errors, visitor (``config``: the settings)."""
    from etlkit.visits.validation import COLUMN_COUNT, DISPLAY_NAMES

    read = [o for o in outcomes if o.get("rows_read")]
    report_fields = tuple((name, "text") for name in DISPLAY_NAMES[:COLUMN_COUNT])
    inputs = [
        DatasetRef(
            SFTP,
            sftp_conn_id,
            f"{config.remote_dir.rstrip('/')}/{o['extra']['file']}",
            None,
            report_fields,
        )
        for o in read
    ]

    def table(name: str, rows: int | None) -> DatasetRef:
        return DatasetRef(POSTGRES, postgres_conn_id, f"{config.db_schema}.{name}", rows)

    outputs = [
        table(config.table_statistics, sum(o.get("rows_loaded") or 0 for o in read)),
        table(config.table_errors, sum(o.get("rows_rejected") or 0 for o in read)),
        table(config.table_visitor, sum(o["extra"].get("visitors_upserted") or 0 for o in read)),
    ]
    return LineageNote(inputs, outputs)


SIERRA_TABLES = (
    "item_record",
    "item_record_property",
    "record_metadata",
    "bib_record_item_record_link",
    "bib_record_property",
    "subfield",
    "itype_property_myuser",
    "material_property_myuser",
)


def sierra_lineage(sierra_conn_id: str, backend_conn_id: str, summary: dict[str, Any]) -> LineageNote:
    """``sierra_view`` → the Signum backend's ``/sync`` (gzip TSV of the protocol's columns)."""
    from etlkit.sierra.protocol import COLUMNS

    inputs = [DatasetRef(POSTGRES, sierra_conn_id, f"sierra_view.{t}") for t in SIERRA_TABLES]
    output = DatasetRef(
        HTTP, backend_conn_id, "/sync", summary.get("rows"), tuple((c, "text") for c in COLUMNS)
    )
    return LineageNote(inputs, [output])


DICTIONARY_PATHS = ["/agents", "/categories", "/agent-groups", "/labels", "/scorecards", "/tags", "/users"]
SESSION_PATHS = ["/sessions", "/sessions/{id}/{detail}"]


def enderturing_lineage(
    enderturing_conn_id: str, postgres_conn_id: str, schema: str, paths: list[str], tables: dict[str, dict]
) -> LineageNote:
    """The Ender Turing API's endpoints → the warehouse tables (rows inserted or updated)."""
    inputs = [DatasetRef(HTTP, enderturing_conn_id, path) for path in paths]
    outputs = [
        DatasetRef(POSTGRES, postgres_conn_id, f"{schema}.{table}", counts["inserted"] + counts["updated"])
        for table, counts in tables.items()
    ]
    return LineageNote(inputs, outputs)


def movies_lineage(pg_conn_id: str, es_conn_id: str, pg_schema: str, index: str, rows: int) -> LineageNote:
    """The ``content`` schema's film works, genres and people → the ``movies`` index (alias)."""
    from etlkit.movies import queries

    inputs = [DatasetRef(POSTGRES, pg_conn_id, f"{pg_schema}.{t}") for t in queries.SOURCE_TABLES]
    return LineageNote(inputs, [DatasetRef(ELASTICSEARCH, es_conn_id, index, rows, movies_fields())])


def movies_fields() -> tuple[tuple[str, str], ...]:
    import json
    from pathlib import Path

    import etlkit.movies

    body = json.loads((Path(etlkit.movies.__file__).parent / "index_body.json").read_text())
    properties = body.get("mappings", {}).get("properties", {})
    return tuple((name, spec.get("type", "object")) for name, spec in properties.items())


FILE = "file"


def job_component_lineage(
    component: Any, run_context: dict[str, Any], path: str | None, summary: dict
) -> LineageNote:
    """A declarative job's component: a reader's source is an input, a writer's sink an output.

    Files are ``file`` datasets (namespace ``file``, the absolute path), tables PostgreSQL ones;
    a reader's query is parsed for the tables it reads (openlineage-sql).
    """
    config = component.config
    conn_id = run_context["connections"].get(getattr(config, "conn", None) or "", "")
    columns = getattr(config, "columns", None) or []  # a writer's columns are plain names
    fields = tuple((c.name, getattr(c, "type", None) or "string") for c in columns if hasattr(c, "name"))
    kind = component.type
    if kind in ("read_csv", "read_json"):
        return LineageNote([DatasetRef(FILE, "", path or config.path, None, fields)], [])
    if kind == "read_sql":
        return LineageNote([DatasetRef(POSTGRES, conn_id, t) for t in sql_tables(config)], [])
    written = summary.get("rows_out", {}).get("target")
    if kind in ("write_csv", "write_json"):
        return LineageNote([], [DatasetRef(FILE, "", path or config.path, written)])
    if kind == "write_sql":
        return LineageNote([], [DatasetRef(POSTGRES, conn_id, config.table, written)])
    return LineageNote()


def sql_tables(config: Any) -> list[str]:
    if config.table:
        return [config.table]
    import openlineage_sql

    # The parser does not read psycopg placeholders: a literal stands in for each.
    parsed = openlineage_sql.parse([re.sub(r"%\(\w+\)s|%s", "NULL", config.query)])
    return [t.qualified_name for t in parsed.in_tables if "." in t.qualified_name]
