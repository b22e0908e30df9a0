"""``make stack`` / ``make stack-down``: Airflow on CeleryExecutor, production-shaped, on this machine.

What runs (each its own process group, logs in ``<root>/logs/``):

* the metadata DB as its own database on the machine's PostgreSQL (``<prefix>_airflow``);
* Redis (Debian's ``redis-server``, loopback, no persistence) as the Celery broker;
* ``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer``;
* two ``airflow celery worker`` processes (``worker1``, ``worker2``) as two hosts would run them:
  each has its own HOME, TMPDIR, working directory and AIRFLOW_HOME under ``<root>/hosts/<worker>/``
  and reports its own hostname to Airflow; the only directory they share is the one the deployment
  declares shared, ``<root>/shared`` (task logs, declarative-job data and staging, visit archives),
  as compose's ``etl-data`` volume;
* the systems the pipelines talk to, with the demo's generated data: a real sshd serving visit
  reports, the Signum backend, the fake Ender Turing API, the Elasticsearch-subset server, and one
  target database per pipeline (``<prefix>_visits``, ``_sierra``, ``_enderturing``, ``_movies``,
  ``_jobs``).

Connections and Variables are given as ``AIRFLOW_CONN_*`` / ``AIRFLOW_VAR_*`` environment, the same
keys ``docker-compose.yaml`` sets. ``python -m dev.stack up`` starts a supervisor in the background
and prints the URL and the login once the API answers; ``python -m dev.stack down`` stops it all.
The test suite (``tests/stack``) drives the same ``Stack`` class in-process.

``ETLKIT_STACK_NEAR_CRON=1`` gives the visits DAG a schedule firing every few minutes (for a
scheduled run made by the scheduler itself); otherwise every DAG keeps its production schedule.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
import psycopg

from dev import jobs_data, movies_data, pgdb, sierra_data
from dev.airflow_env import REPO_ROOT, airflow_environment, connection_env, variable_env
from dev.enderturing_server import FakeEnderTuring, RunningServer, generate_dataset, start_server
from dev.es_server import EsSubsetServer
from dev.sentry_server import SentryServer
from dev.signum_server import BackendState, SignumServer
from dev.sshd import SshServer, free_port, start_sshd, wait_for_port
from dev.ui import UI_USER, api_environment, auth_environment, wait_until_healthy
from dev.visits_data import write_report

DEFAULT_ROOT = Path(tempfile.gettempdir()) / "etlkit-stack"
DEFAULT_PREFIX = "etlkit_stack"
WORKERS = ("worker1", "worker2")
WORKER_CONCURRENCY = 2
AIRFLOW_SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
REDIS_SERVER = "/usr/bin/redis-server"

VISIT_REPORTS = {101: "jk", 102: "jyv", 103: "fgh"}
VISIT_REPORT_ROWS = 300
SIERRA_ITEMS = 1200
SIERRA_BATCH_SIZE = 500
ENDERTURING_DAYS = (date(2024, 6, 24), date(2024, 6, 25), date(2024, 6, 26))
ENDERTURING_SESSIONS_PER_DAY = 60
# Days only the backfill tests load (tests/stack/test_schedules_and_backfills.py), so that no other
# test's day is in their way.
ENDERTURING_BACKFILL_DAYS = tuple(date(2024, 5, day) for day in range(13, 17))
MOVIES_FILMS = 300
JOBS_DAY = date(2025, 3, 2)
# Transient faults retry after seconds, not the production minutes (the policy's ceiling stays the DAG's).
STACK_RETRY_POLICY = {"retry_delay_s": 5, "max_retry_delay_s": 20}
# A worker that stops heartbeating is declared lost after this; Airflow's default is 300 s.
TASK_HEARTBEAT_TIMEOUT_S = 60
NEAR_CRON = "*/4 * * * *"


@dataclass(frozen=True)
class Layout:
    """Where everything of one stack lives: directories under ``root``, databases named ``prefix_*``."""

    root: Path
    prefix: str = DEFAULT_PREFIX

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    @property
    def home(self) -> Path:
        return self.root / "airflow_home"

    def host(self, worker: str) -> Path:
        return self.root / "hosts" / worker

    def database(self, purpose: str) -> str:
        return f"{self.prefix}_{purpose}"

    @property
    def remote_visits_dir(self) -> Path:
        """The SFTP server's directory (the source system's disk, not a worker's)."""
        return self.root / "systems" / "sftp" / "archivosVisitas"

    @property
    def jobs_data_root(self) -> Path:
        return self.shared / "jobs" / "data"

    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"


@dataclass
class DemoSystems:
    """The systems the pipelines talk to, with generated data, in this process's threads (sshd aside)."""

    layout: Layout
    sshd: SshServer | None = None
    signum: SignumServer | None = None
    enderturing: FakeEnderTuring | None = None
    enderturing_server: RunningServer | None = None
    elasticsearch: EsSubsetServer | None = None
    sentry: SentryServer | None = None
    signum_key: str = field(default_factory=lambda: secrets.token_hex(16))

    def start(self) -> DemoSystems:
        layout = self.layout
        for purpose in ("visits", "sierra", "enderturing", "movies", "jobs"):
            pgdb.recreate_database(layout.database(purpose))
        self.write_visit_reports(VISIT_REPORTS)
        self.sshd = start_sshd(layout.root / "systems" / "sshd")
        sierra_data.fill_database(layout.database("sierra"), SIERRA_ITEMS)
        self.signum = SignumServer(BackendState(batch_size=SIERRA_BATCH_SIZE, keys={self.signum_key: "etl"}))
        self.signum.start()
        self.enderturing = FakeEnderTuring(
            generate_dataset(
                [*ENDERTURING_DAYS, *ENDERTURING_BACKFILL_DAYS], ENDERTURING_SESSIONS_PER_DAY, seed=7
            )
        )
        self.enderturing_server = start_server(self.enderturing)
        with psycopg.connect(pgdb.dsn(layout.database("movies")), autocommit=True) as conn:
            movies_data.create_schema(conn, "A")
            movies_data.create_indexes(conn, "A")
            movies_data.generate(conn, MOVIES_FILMS, convention="A")
        self.elasticsearch = EsSubsetServer(major=8).start()
        jobs_data.create_demo_tables(pgdb.dsn(layout.database("jobs")))
        jobs_data.write_orders_export(layout.jobs_data_root, JOBS_DAY)
        self.sentry = SentryServer().start()
        return self

    def write_visit_reports(self, reports: dict[int, str], rows: int = VISIT_REPORT_ROWS) -> list[Path]:
        remote = self.layout.remote_visits_dir
        remote.mkdir(parents=True, exist_ok=True)
        written = []
        for n, column2 in reports.items():
            path = write_report(remote / f"report_{n}.txt", rows, seed=n, column2=column2)
            an_hour_ago = time.time() - 3600
            os.utime(path, (an_hour_ago, an_hour_ago))
            written.append(path)
        return written

    def environment(self) -> dict[str, str]:
        """Connections and Variables, as the workers (and only they) need them."""
        layout = self.layout
        assert (
            self.sshd and self.signum and self.enderturing and self.enderturing_server and self.elasticsearch
        )
        settings = {
            "default_environment": "STACK",
            "metrics_conn_id": "etl_metrics_pg",
            "staging": {"root": str(layout.shared / "jobs" / "staging")},
            "environments": {
                "STACK": {
                    "data_root": str(layout.jobs_data_root),
                    "connections": {"warehouse": "warehouse", "visits": "postgres_visits"},
                }
            },
        }
        return (
            dict(
                [
                    connection_env("sftp_visits", self.sshd.connection()),
                    connection_env("postgres_visits", pgdb.postgres_connection(layout.database("visits"))),
                    connection_env(
                        "sierra_dna",
                        {
                            **pgdb.postgres_connection(layout.database("sierra")),
                            "login": sierra_data.READER_ROLE,
                            "extra": {"application_name": "airflow-sierra-sync"},
                        },
                    ),
                    connection_env("signum_backend", self.signum.connection(self.signum_key)),
                    connection_env(
                        "enderturing_default",
                        {
                            "conn_type": "http",
                            "host": self.enderturing_server.url,
                            "login": self.enderturing.username,
                            "password": self.enderturing.password,
                        },
                    ),
                    connection_env(
                        "enderturing_warehouse", pgdb.postgres_connection(layout.database("enderturing"))
                    ),
                    connection_env("movies_postgres", pgdb.postgres_connection(layout.database("movies"))),
                    connection_env(
                        "movies_elasticsearch",
                        {"conn_type": "elasticsearch", "host": "127.0.0.1", "port": self.elasticsearch.port},
                    ),
                    connection_env("etl_metrics_pg", pgdb.postgres_connection(layout.database("jobs"))),
                    connection_env("warehouse", pgdb.postgres_connection(layout.database("jobs"))),
                    # No staging_dir: each worker stages under its own TMPDIR. Archives go to the shared root.
                    variable_env(
                        "sftp_visits_config",
                        {
                            "remote_dir": str(layout.remote_visits_dir),
                            "backup_dir": str(layout.shared / "visits" / "bckp"),
                            "quarantine_dir": str(layout.shared / "visits" / "quarantine"),
                            "min_file_age_s": 0,
                        },
                    ),
                    # The generated catalogue has NULL itypes, which the backend rejects as a whole file.
                    variable_env("sierra_sync_settings", {"itype_null_fallback": 0}),
                    variable_env("declarative_jobs", settings),
                    variable_env("etl_retry_policy", STACK_RETRY_POLICY),
                ]
            )
            | self.sentry_environment()
        )

    def sentry_environment(self) -> dict[str, str]:
        """Airflow's Sentry integration, on by environment only, sending to the local endpoint."""
        assert self.sentry
        return {
            "AIRFLOW__SENTRY__SENTRY_ON": "True",
            "AIRFLOW__SENTRY__SENTRY_DSN": self.sentry.dsn,
            "AIRFLOW__SENTRY__ENVIRONMENT": "stack",
        }

    def stop(self) -> None:
        for stop in (
            self.sshd and self.sshd.stop,
            self.signum and self.signum.stop,
            self.enderturing_server and self.enderturing_server.stop,
            self.elasticsearch and self.elasticsearch.stop,
            self.sentry and self.sentry.stop,
        ):
            if stop:
                stop()


@dataclass
class Stack:
    """Redis, the Airflow services and two Celery workers as subprocesses, each in its own process group."""

    layout: Layout
    port: int
    system_env: dict[str, str]
    extra_env: dict[str, str] = field(default_factory=dict)
    worker_env: dict[str, str] = field(default_factory=dict)
    # Per component, applied at its next (re)start: e.g. a schedule only the dag-processor reads.
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    near_cron: bool = False
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    redis_port: int = field(default_factory=free_port)
    _env: dict[str, str] = field(default_factory=dict)
    _log_start: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metadata_db(self) -> str:
        return self.layout.database("airflow")

    def log_path(self, name: str) -> Path:
        return self.layout.logs / f"{name}.log"

    def base_environment(self) -> dict[str, str]:
        layout = self.layout
        metadata = f"postgresql+psycopg2://{pgdb.PG_USER}@{pgdb.PG_HOST}:{pgdb.PG_PORT}/{self.metadata_db}"
        env = {
            **airflow_environment(layout.home),
            **auth_environment(layout.home, UI_USER, self.password),
            **api_environment(self.port),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            # The deadlines the test harness switches off for dag.test(): a real scheduler runs them.
            "ETLKIT_DEADLINE_ALERTS": "on",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "dev.stack_hostname.worker_hostname",
            # Task logs on the declared shared root (compose mounts ./logs into every service), so the
            # API server reads any worker's log without the workers' log servers.
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(layout.shared / "logs"),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT_S),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__SENTRY__INCLUDE_LOCAL_VARIABLES": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            # Deploy-time schedules read from the environment: no run every minute on the demo stack.
            "MOVIES_ETL_SCHEDULE": "0 3 * * *",
            "SIERRA_SYNC_INTERVAL_SECONDS": "86400",
            "SFTP_VISITS_TZ": "UTC",
            "TZ": "UTC",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }
        if self.near_cron:
            env["SFTP_VISITS_SCHEDULE"] = NEAR_CRON
        return {**env, **self.extra_env}

    def environment(self, component: str) -> dict[str, str]:
        env = {**os.environ, **self._env, **self.system_env}
        if component in WORKERS:
            host = self.layout.host(component)
            env.update(
                {
                    "HOME": str(host / "home"),
                    "TMPDIR": str(host / "tmp"),
                    "AIRFLOW_HOME": str(host / "airflow_home"),
                    "ETLKIT_STACK_HOSTNAME": component,
                    **self.worker_env,
                }
            )
        return {**env, **self.service_env.get(component, {})}

    # ---- processes ------------------------------------------------------------------------------

    def spawn(self, name: str, command: list[str], cwd: Path | None = None) -> subprocess.Popen:
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("ab") as log:
            process = subprocess.Popen(
                command,
                env=self.environment(name),
                cwd=cwd or self.layout.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def airflow(self, *args: str) -> list[str]:
        return [str(Path(sys.executable).with_name("airflow")), *args]

    def start_redis(self) -> None:
        data = self.layout.root / "redis"
        data.mkdir(parents=True, exist_ok=True)
        command = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", ""]
        self.spawn("redis", [*command, "--appendonly", "no", "--dir", str(data)])
        wait_for_port(self.redis_port)

    def start_service(self, name: str) -> None:
        if name == "redis":
            self.start_redis()
        elif name in WORKERS:
            self.start_worker(name)
        elif name == "api-server":
            self.spawn(
                name, self.airflow(name, "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1")
            )
        else:
            self.spawn(name, self.airflow(name))

    def start_worker(self, name: str) -> None:
        host = self.layout.host(name)
        log = self.log_path(name)
        self._log_start[name] = len(log.read_text(errors="replace")) if log.exists() else 0
        for sub in ("home", "tmp", "work", "airflow_home"):
            (host / sub).mkdir(parents=True, exist_ok=True)
        command = self.airflow("celery", "worker", "--celery-hostname", f"{name}@%h", "--skip-serve-logs")
        self.spawn(name, [*command, "--concurrency", str(WORKER_CONCURRENCY)], cwd=host / "work")

    def start(self, timeout_s: float = 300) -> None:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        for directory in (self.layout.logs, self.layout.shared / "logs", self.layout.jobs_data_root):
            directory.mkdir(parents=True, exist_ok=True)
        self._env = self.base_environment()
        pgdb.recreate_database(self.metadata_db)
        with self.log_path("db-migrate").open("wb") as log:
            subprocess.run(
                self.airflow("db", "migrate"),
                env=self.environment("db-migrate"),
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
            )
        self.start_redis()
        for name in (*AIRFLOW_SERVICES, *WORKERS):
            self.start_service(name)
        if not wait_until_healthy(self.url, lambda: self.alive("api-server"), timeout_s):
            raise RuntimeError(f"the API server did not come up; see {self.log_path('api-server')}")
        self.wait_for_workers(timeout_s)

    def alive(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def wait_for_workers(self, timeout_s: float, names: tuple[str, ...] = WORKERS) -> None:
        """Each worker logs ``<name>@<host> ready.`` once it consumes from the broker."""
        deadline = time.monotonic() + timeout_s
        for name in names:
            while (
                " ready."
                not in self.log_path(name).read_text(errors="replace")[self._log_start.get(name, 0) :]
            ):
                if time.monotonic() > deadline or not self.alive(name):
                    raise RuntimeError(f"{name} did not start; see {self.log_path(name)}")
                time.sleep(1)

    def restart_dead(self) -> list[str]:
        """What compose's ``restart: always`` does: start again every component that exited.

        A Celery worker exits when the broker is unreachable while it starts (its broadcast fails).
        """
        dead = [name for name in ("redis", *AIRFLOW_SERVICES, *WORKERS) if not self.alive(name)]
        for name in dead:
            self.start_service(name)
        return dead

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the component's whole process group (a SIGKILL is a host that vanished)."""
        process = self.processes[name]
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        process.wait(timeout=60)

    def restart(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop a component with ``sig`` (SIGTERM: a graceful stop; SIGKILL: the host died), then start it."""
        if sig == signal.SIGKILL:
            self.kill(name)
        else:
            self.stop_service(name)
        self.start_service(name)

    def stop_service(self, name: str, timeout_s: float = 30) -> None:
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill(name)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        for name in (*WORKERS, "scheduler", "triggerer", "dag-processor", "api-server", "redis"):
            self.stop_service(name)

    # ---- REST API -------------------------------------------------------------------------------

    def token(self) -> str:
        response = httpx.post(
            self.url + "/auth/token", json={"username": UI_USER, "password": self.password}, timeout=30
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/api/v2", headers={"Authorization": f"Bearer {self.token()}"}, timeout=60
        )


# ---- make stack / make stack-down -----------------------------------------------------------------


def _supervise(layout: Layout, port: int) -> int:
    """Run the stack in this process until SIGTERM; the state file says where it is."""
    systems = DemoSystems(layout).start()
    stack = Stack(
        layout,
        port,
        systems.environment(),
        near_cron=os.environ.get("ETLKIT_STACK_NEAR_CRON") == "1",
        password=os.environ.get("ETLKIT_STACK_PASSWORD") or secrets.token_urlsafe(12),
    )
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        stack.start()
        state = {"pid": os.getpid(), "url": stack.url, "user": UI_USER, "password": stack.password}
        layout.state_file.write_text(json.dumps({**state, "logs": str(layout.logs)}))
        while not stopping:
            time.sleep(5)
            if not stopping and (restarted := stack.restart_dead()):
                print(f"restarted {', '.join(restarted)}", flush=True)
    finally:
        stack.stop()
        systems.stop()
        layout.state_file.unlink(missing_ok=True)
    return 0


def _describe(layout: Layout, state: dict) -> str:
    return (
        f"\n  Airflow UI / REST API: {state['url']}  (CeleryExecutor, workers: {', '.join(WORKERS)})\n"
        f"  login: {state['user']} / {state['password']}\n"
        f"  logs: {layout.logs}/ (one file per component), task logs in {layout.shared}/logs/\n"
        f"  shared root (the only disk the workers share): {layout.shared}\n"
        f"  stop with: make stack-down\n"
    )


def up(layout: Layout, port: int, timeout_s: float = 600) -> int:
    if layout.state_file.exists():
        print(f"a stack is already running:{_describe(layout, json.loads(layout.state_file.read_text()))}")
        return 0
    shutil.rmtree(layout.root, ignore_errors=True)
    layout.logs.mkdir(parents=True)
    with (layout.logs / "stack.log").open("ab") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "dev.stack", "supervise", "--root", str(layout.root), "--port", str(port)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    print(f"starting the stack in {layout.root} (log: {layout.logs / 'stack.log'}) ...", flush=True)
    deadline = time.monotonic() + timeout_s
    while not layout.state_file.exists():
        if supervisor.poll() is not None or time.monotonic() > deadline:
            print(f"the stack did not start; see {layout.logs}/", file=sys.stderr)
            _terminate(supervisor.pid)
            return 1
        time.sleep(2)
    print(_describe(layout, json.loads(layout.state_file.read_text())), flush=True)
    return 0


def _terminate(pid: int, timeout_s: float = 120) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(1)
    os.killpg(pid, signal.SIGKILL)


def down(layout: Layout) -> int:
    if layout.state_file.exists():
        _terminate(json.loads(layout.state_file.read_text())["pid"])
        print(f"stack stopped; logs are in {layout.logs}/ (task logs in {layout.shared}/logs/)")
    else:
        print(f"no stack running in {layout.root}; logs (if any) are in {layout.logs}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "supervise"])
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("ETLKIT_STACK_ROOT", DEFAULT_ROOT)))
    parser.add_argument("--port", type=int, default=int(os.environ.get("ETLKIT_STACK_PORT", "8080")))
    args = parser.parse_args(argv)
    layout = Layout(args.root)
    commands: dict[str, Callable[[], int]] = {
        "up": lambda: up(layout, args.port),
        "down": lambda: down(layout),
        "supervise": lambda: _supervise(layout, args.port),
    }
    return commands[args.command]()


if __name__ == "__main__":
    sys.exit(main())
