"""``make demo``: run the pipelines once on local defaults and print what they loaded.

Starts what the pipelines need on this machine (an sshd on a loopback port serving reports
made by ``dev.visits_data``, plus the real sample reports when ``../shared/data/visits``
exists; a demo database on the local PostgreSQL), runs each DAG with ``airflow dags test``
in an isolated AIRFLOW_HOME, and prints a summary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from dev import pgdb
from dev.airflow_env import REPO_ROOT, airflow_environment, connection_env, migrate_metadata_db, variable_env
from dev.sshd import start_sshd
from dev.visits_data import write_report

DEMO_DB = "etlkit_demo"
SAMPLE_REPORTS = REPO_ROOT.parent / "shared" / "data" / "visits"


def run_dag(env: dict[str, str], dag_id: str, conf: dict) -> bool:
    airflow = Path(sys.executable).with_name("airflow")
    print(f"==> airflow dags test {dag_id}", flush=True)
    result = subprocess.run(
        [str(airflow), "dags", "test", dag_id, "-c", json.dumps(conf)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL if not os.environ.get("DEMO_VERBOSE") else None,
        stderr=subprocess.STDOUT if not os.environ.get("DEMO_VERBOSE") else None,
    )
    return result.returncode == 0


def visits_demo(workdir: Path, env: dict[str, str]) -> dict:
    remote = workdir / "visits" / "remote"
    remote.mkdir(parents=True)
    for n, column2 in ((101, "jk"), (102, "jyv"), (103, "fgh")):
        path = write_report(remote / f"report_{n}.txt", 2000, seed=n, column2=column2)
        old = time.time() - 3600
        os.utime(path, (old, old))
    if SAMPLE_REPORTS.is_dir():
        for sample in sorted(SAMPLE_REPORTS.glob("report_*.txt")):
            shutil.copy2(sample, remote / sample.name)  # served from a temp dir, never into the repo
    sshd = start_sshd(workdir / "sshd")
    env.update(
        [
            connection_env("sftp_visits", sshd.connection()),
            connection_env("postgres_visits", pgdb.postgres_connection(DEMO_DB)),
            variable_env(
                "sftp_visits_config",
                {
                    "remote_dir": str(remote),
                    "backup_dir": str(workdir / "visits" / "bckp"),
                    "quarantine_dir": str(workdir / "visits" / "quarantine"),
                    "staging_dir": str(workdir / "visits" / "staging"),
                    "min_file_age_s": 0,
                },
            ),
        ]
    )
    try:
        ok = run_dag(env, "sftp_visits_to_postgres", {"reference_date": "2024-05-31"})
    finally:
        sshd.stop()
    with psycopg.connect(pgdb.dsn(DEMO_DB)) as conn:
        files, rows, loaded, rejected = conn.execute(
            "SELECT count(*), coalesce(sum(rows_read), 0), coalesce(sum(rows_loaded), 0),"
            " coalesce(sum(rows_rejected), 0) FROM load_log WHERE status IN ('COMPLETED', 'QUARANTINED')"
        ).fetchone()
        visitors = conn.execute("SELECT count(*) FROM visitor").fetchone()[0]
    return {
        "pipeline": "sftp_visits_to_postgres",
        "ok": ok,
        "files": files,
        "rows": rows,
        "loaded": loaded,
        "rejected": rejected,
        "visitors": visitors,
        "archives": len(list((workdir / "visits" / "bckp").glob("*.zip"))),
        "left_at_source": len(list(remote.iterdir())),
    }


def print_summary(results: list[dict]) -> None:
    print()
    print(
        f"{'pipeline':<28} {'ok':<4} {'files':>6} {'rows':>8} {'loaded':>8} {'rejected':>8} {'visitors':>8}"
    )
    for r in results:
        print(
            f"{r['pipeline']:<28} {'yes' if r['ok'] else 'NO':<4} {r['files']:>6} {r['rows']:>8} "
            f"{r['loaded']:>8} {r['rejected']:>8} {r['visitors']:>8}"
        )
    for r in results:
        extra = {
            k: v
            for k, v in r.items()
            if k not in {"pipeline", "ok", "files", "rows", "loaded", "rejected", "visitors"}
        }
        print(f"  {r['pipeline']}: {extra}")


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="etlkit-demo-"))
    env = airflow_environment(workdir / "airflow_home")
    print(f"demo workspace: {workdir}; database {DEMO_DB} on {pgdb.PG_HOST}:{pgdb.PG_PORT}", flush=True)
    pgdb.recreate_database(DEMO_DB)
    migrate_metadata_db(env)
    results = [visits_demo(workdir, env)]
    print_summary(results)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
