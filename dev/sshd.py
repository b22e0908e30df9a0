"""A real, unprivileged OpenSSH ``sshd`` on a loopback port, with keys generated per run.

Used by the test harness and by ``make demo``. Public-key auth only, ``internal-sftp``, an
ed25519 host key whose public half goes into the Airflow connection extra (``host_key``), so
the DAG connects with host-key verification on.
"""

from __future__ import annotations

import getpass
import json
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD_BINARY = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "etlkit-test", "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class SshServer:
    """A running sshd; ``connection_json`` is what ``AIRFLOW_CONN_<ID>`` takes."""

    workdir: Path
    port: int
    user: str
    host_public_key: str
    client_key_path: Path
    process: subprocess.Popen | None = None

    def connection(self, **extra: object) -> dict:
        key_type, key_data = self.host_public_key.split()[:2]
        return {
            "conn_type": "sftp",
            "host": "127.0.0.1",
            "port": self.port,
            "login": self.user,
            "extra": {"key_file": str(self.client_key_path), "host_key": f"{key_type} {key_data}", **extra},
        }

    def connection_json(self, **extra: object) -> str:
        return json.dumps(self.connection(**extra))

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def start(self) -> None:
        if self.process and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [SSHD_BINARY, "-D", "-e", "-f", str(self.workdir / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "sshd.log", "ab"),  # noqa: SIM115 - owned by the child
        )
        wait_for_port(self.port)


def ensure_openssh_server() -> None:
    if not Path(SSHD_BINARY).exists():
        raise RuntimeError(f"{SSHD_BINARY} is missing: install Debian's openssh-server (make system does it)")


def start_sshd(workdir: Path, port: int | None = None) -> SshServer:
    """Generate keys and a config under ``workdir`` and start sshd on 127.0.0.1."""
    ensure_openssh_server()
    workdir.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation dir sshd insists on
    host_public = _keygen(workdir / "ssh_host_ed25519_key")
    client_public = _keygen(workdir / "client_ed25519_key")
    (workdir / "authorized_keys").write_text(client_public + "\n")
    (workdir / "authorized_keys").chmod(0o600)
    port = port or free_port()
    (workdir / "sshd_config").write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {workdir / 'ssh_host_ed25519_key'}",
                f"PidFile {workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                "Subsystem sftp internal-sftp",
                "LogLevel ERROR",
                # paramiko leaves the socket of a failed connect (bad host key, refused auth) open
                # until sshd's login grace time ends; past 10 such, sshd's default drops new
                # connections at random, so the failure tests would flake.
                "MaxStartups 200",
                "",
            ]
        )
    )
    server = SshServer(
        workdir=workdir,
        port=port,
        user=getpass.getuser(),
        host_public_key=host_public,
        client_key_path=workdir / "client_ed25519_key",
    )
    server.start()
    return server
