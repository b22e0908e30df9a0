"""Fixtures of the visits pipeline: a remote directory served by the real sshd, local archive
directories, a private schema in the session database, and the connections/Variable set as env."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from dev import pgdb
from dev.sshd import SshServer

DAG_ID = "sftp_visits_to_postgres"


@dataclass
class VisitsSandbox:
    root: Path
    schema: str
    dsn: str
    run_dag: object

    @property
    def remote(self) -> Path:
        return self.root / "remote"

    @property
    def backup(self) -> Path:
        return self.root / "bckp"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    def config(self, **overrides) -> dict:
        return {
            "remote_dir": str(self.remote),
            "backup_dir": str(self.backup),
            "quarantine_dir": str(self.quarantine),
            "staging_dir": str(self.staging),
            "min_file_age_s": 0,
            "db_schema": self.schema,
            **overrides,
        }

    def put(self, name: str, content: bytes | str, age_s: float = 120) -> Path:
        path = self.remote / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
        return path

    def run(self, reference_date: str | None = "2024-05-10", **conf):
        if reference_date:
            conf["reference_date"] = reference_date
        return self.run_dag(DAG_ID, conf=conf)

    def query(self, text: str, params=None) -> list[tuple]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{self.schema}"')
            return conn.execute(text, params).fetchall()

    def scalar(self, text: str, params=None):
        return self.query(text, params)[0][0]

    def counts(self) -> dict[str, int]:
        return {
            table: self.scalar(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
            for table in ("load_log", "statistics", "errors", "visitor")
        }

    def loads(self) -> dict[str, list[tuple]]:
        """``{file_name: [(status, rows_read, rows_loaded, rows_rejected), ...]}`` in load order."""
        result: dict[str, list[tuple]] = {}
        for name, *rest in self.query(
            "SELECT file_name, status, rows_read, rows_loaded, rows_rejected FROM load_log ORDER BY load_id"
        ):
            result.setdefault(name, []).append(tuple(rest))
        return result

    def remote_names(self) -> list[str]:
        return sorted(p.name for p in self.remote.iterdir())

    def archive_members(self) -> dict[str, dict[str, str]]:
        """``{zip name: {member: sha256}}`` of the backup directory."""
        archives = {}
        for path in sorted(self.backup.glob("*.zip")):
            with zipfile.ZipFile(path) as zf:
                archives[path.name] = {m: hashlib.sha256(zf.read(m)).hexdigest() for m in zf.namelist()}
        return archives


@pytest.fixture
def visits_sandbox(tmp_path, sshd: SshServer, pg_database, airflow_conn, airflow_var, run_dag):
    """Makes sandboxes (own directories and schema); the Variable points at the last one made."""
    airflow_conn("sftp_visits", sshd.connection())
    airflow_conn("postgres_visits", pgdb.postgres_connection(pg_database))

    def make(name: str = "main", **config) -> VisitsSandbox:
        sandbox = VisitsSandbox(
            root=tmp_path / name,
            schema=f"visits_{uuid.uuid4().hex[:8]}",
            dsn=pgdb.dsn(pg_database),
            run_dag=run_dag,
        )
        for directory in (sandbox.remote, sandbox.backup, sandbox.quarantine):
            directory.mkdir(parents=True)
        airflow_var("sftp_visits_config", sandbox.config(**config))
        return sandbox

    return make


@pytest.fixture
def visits(visits_sandbox) -> VisitsSandbox:
    return visits_sandbox()
