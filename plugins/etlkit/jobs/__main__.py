"""``python -m etlkit.jobs schema|validate|scaffold``: the job tooling CI and editors use.

- ``schema [--check]`` writes schemas/job.schema.json (``--check`` fails if the committed copy is stale);
- ``validate FILE...`` prints every problem and exits 1 on any;
- ``scaffold [DIR]`` writes the missing ``<name>.py`` loader of every ``<name>.json`` (default dags/jobs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from etlkit import PROJECT_ROOT
from etlkit.jobs.schema import SCHEMA_PATH, schema_text
from etlkit.jobs.validation import JobDefinitionError, load_job

JOBS_DIR = PROJECT_ROOT / "dags" / "jobs"
LOADER_TEXT = """# Airflow DAG loader, written by `python -m etlkit.jobs scaffold`: the job is the .json file of the same name.
from etlkit.operators.jobs import load_job_dag

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
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
