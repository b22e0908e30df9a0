"""``python -m etlkit.jobs schema|docs|validate|scaffold|run``: the job tooling CI, editors and authors use.

- ``schema [--check]`` writes schemas/job.schema.json (``--check`` fails if the committed copy is stale);
- ``docs [--check]`` rewrites the generated field reference in docs/jobs.md (``--check``: fails if stale);
- ``validate FILE...`` prints every problem and exits 1 on any;
- ``scaffold [DIR]`` writes the missing ``<name>.py`` loader of every ``<name>.json`` (default dags/jobs);
- ``run FILE --data-root DIR [--date D] [--conn NAME=DSN]... [--dry-run [--out DIR]]`` runs a job here,
  without Airflow, and prints every component's counters (see ``etlkit.jobs.localrun``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

import psycopg

from etlkit import PROJECT_ROOT
from etlkit.common.errors import BadInputError, ConfigurationError
from etlkit.jobs import docgen
from etlkit.jobs.localrun import report, run_local
from etlkit.jobs.schema import SCHEMA_PATH, schema_text
from etlkit.jobs.validation import JobDefinitionError, load_job

JOBS_DIR = PROJECT_ROOT / "dags" / "jobs"
LOADER_TEXT = """# Airflow DAG loader, written by `python -m etlkit.jobs scaffold`: the job is the .json file of the same name.
from etlkit.jobs.dag import load_job_dag

dag = load_job_dag(__file__)
"""


def unpaired_files(directory: Path) -> list[str]:
    """Job files without a loader and loaders without a job file."""
    jsons = {p.stem for p in directory.glob("*.json")}
    loaders = {p.stem for p in directory.glob("*.py") if p.read_text() == LOADER_TEXT}
    return [f"{s}.json has no loader" for s in sorted(jsons - loaders)] + [
        f"{s}.py has no job file" for s in sorted(loaders - jsons)
    ]


def scaffold(directory: Path) -> list[Path]:
    written = []
    for job_file in sorted(directory.glob("*.json")):
        loader = job_file.with_suffix(".py")
        if not loader.exists():
            loader.write_text(LOADER_TEXT)
            written.append(loader)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etlkit.jobs")
    commands = parser.add_subparsers(dest="command", required=True)
    schema = commands.add_parser("schema", help="write the JSON Schema")
    schema.add_argument("--check", action="store_true", help="fail if the committed schema is stale")
    validate = commands.add_parser("validate", help="validate job files")
    validate.add_argument("files", nargs="+", type=Path)
    scaffold_cmd = commands.add_parser("scaffold", help="write missing loaders")
    scaffold_cmd.add_argument("directory", nargs="?", type=Path, default=JOBS_DIR)
    docs = commands.add_parser("docs", help="rewrite the generated field reference in docs/jobs.md")
    docs.add_argument("--check", action="store_true", help="fail if the committed reference is stale")
    _add_run_parser(commands)
    args = parser.parse_args(argv)

    if args.command == "docs":
        return _docs(args.check)
    if args.command == "run":
        return _run(args)

    if args.command == "schema":
        text = schema_text()
        if args.check:
            if not SCHEMA_PATH.is_file() or SCHEMA_PATH.read_text() != text:
                print(f"{SCHEMA_PATH} is stale: run python -m etlkit.jobs schema", file=sys.stderr)
                return 1
            return 0
        SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
        SCHEMA_PATH.write_text(text)
        print(f"wrote {SCHEMA_PATH}")
        return 0
    if args.command == "validate":
        failed = False
        for path in args.files:
            try:
                load_job(path)
                print(f"{path}: ok")
            except JobDefinitionError as error:
                print(error, file=sys.stderr)
                failed = True
        return 1 if failed else 0
    for loader in scaffold(args.directory):
        print(f"wrote {loader}")
    return 0


def _docs(check: bool) -> int:
    text = docgen.DOCS_PATH.read_text()
    try:
        current = docgen.with_reference(text)
    except docgen.StaleDocs as error:
        print(error, file=sys.stderr)
        return 1
    if check:
        if current != text:
            print(
                f"{docgen.DOCS_PATH} field reference is stale: run python -m etlkit.jobs docs",
                file=sys.stderr,
            )
            return 1
        return 0
    docgen.DOCS_PATH.write_text(current)
    print(f"wrote {docgen.DOCS_PATH}")
    return 0


def _add_run_parser(commands) -> None:
    run = commands.add_parser(
        "run", help="run a job here, without Airflow (--dry-run: write nothing but --out)"
    )
    run.add_argument("file", type=Path, help="the job file")
    run.add_argument("--data-root", type=Path, required=True, help="where the job's relative paths point")
    run.add_argument(
        "--date", type=_logical_date, default=None, help="logical date for {{ ds }} etc. (default today, UTC)"
    )
    run.add_argument(
        "--conn",
        action="append",
        type=_conn_pair,
        default=[],
        metavar="NAME=DSN",
        help="database of a logical connection name (read_sql; write_sql without --dry-run)",
    )
    run.add_argument("--dry-run", action="store_true", help="write_sql writes CSV under --out, not its table")
    run.add_argument("--out", type=Path, help="dry-run outputs (default: a new temporary directory)")


def _conn_pair(text: str) -> tuple[str, str]:
    name, separator, dsn = text.partition("=")
    if not separator or not name or not dsn:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=DSN")
    return name, dsn


def _logical_date(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _run(args) -> int:
    try:
        validated = load_job(args.file)
    except JobDefinitionError as error:
        print(error, file=sys.stderr)
        return 1
    connections = dict(args.conn)
    out_dir = None
    if args.dry_run:
        out_dir = args.out or Path(tempfile.mkdtemp(prefix=f"etlkit-dry-run-{validated.job.name}-"))
    logical_date = args.date or _logical_date(dt.datetime.now(dt.UTC).date().isoformat())
    try:
        result = run_local(
            validated,
            args.data_root,
            logical_date=logical_date,
            dry_run=args.dry_run,
            out_dir=out_dir,
            connections=connections,
        )
    except (BadInputError, ConfigurationError, psycopg.Error) as error:
        print(f"{validated.job.name}: failed: {error}", file=sys.stderr)
        return 1
    print(report(result, args.dry_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
