"""SFTP with host-key verification that cannot be switched off by configuration."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import paramiko
from airflow.providers.sftp.hooks.sftp import SFTPHook

from etlkit.common.errors import ConfigurationError


class VerifiedSFTPHook(SFTPHook):
    """``SFTPHook`` that refuses to connect unless the server's host key is pinned or known.

    The connection extra must carry ``host_key`` (``ssh-ed25519 AAAA...``) or set
    ``no_host_key_check: false`` explicitly with a maintained known_hosts file. Anonymous and
    empty-password logins are refused. The check runs on the resolved hook, before any socket.
    Nothing is opened before ``verified_client`` (or ``test_connection``, the UI's Test button).
    """

    conn_name_attr = "ssh_conn_id"
    default_conn_name = "sftp_visits"
    conn_type = "sftp"
    hook_name = "SFTP (etlkit, verified host key)"

    def __init__(self, ssh_conn_id: str = default_conn_name, **kwargs):
        super().__init__(ssh_conn_id=ssh_conn_id, **kwargs)

    def verify_configuration(self) -> None:
        conn = self.get_connection(self.ssh_conn_id)
        extra = conn.extra_dejson
        name = self.ssh_conn_id
        if str(extra.get("no_host_key_check", "")).lower() == "true" or self.no_host_key_check:
            raise ConfigurationError(
                f"connection {name}: no_host_key_check is set; host keys must be verified"
            )
        if str(extra.get("allow_host_key_change", "")).lower() == "true" or self.allow_host_key_change:
            raise ConfigurationError(f"connection {name}: allow_host_key_change must not be true")
        explicit_known_hosts = str(extra.get("no_host_key_check", "")).lower() == "false"
        if self.host_key is None and not explicit_known_hosts:
            raise ConfigurationError(
                f"connection {name}: no host_key in the extra (nor no_host_key_check=false with a "
                "known_hosts file); refusing to connect to an unverified server"
            )
        if not conn.login:
            raise ConfigurationError(f"connection {name}: a login is required")
        has_key = extra.get("key_file") or extra.get("private_key")
        if not has_key and not conn.password:
            raise ConfigurationError(f"connection {name}: needs a private key or a non-empty password")

    @contextmanager
    def verified_client(self) -> Iterator:
        """A paramiko ``SFTPClient``, opened only after ``verify_configuration`` passed."""
        self.verify_configuration()
        try:
            managed = self.get_managed_conn()
            client = managed.__enter__()
        except paramiko.BadHostKeyException as exc:
            raise ConfigurationError(
                f"connection {self.ssh_conn_id}: the host key of {exc.hostname} does not match the pinned "
                f"host_key (got {exc.key.get_name()} {exc.key.get_base64()[:16]}...): refusing to connect"
            ) from exc
        except paramiko.AuthenticationException as exc:
            if "timeout" in str(exc).lower():
                raise  # the server did not answer in time: an SSHException, retried
            # Refused credentials come back the same on every retry.
            raise ConfigurationError(
                f"connection {self.ssh_conn_id}: the server refused the credentials of {self.username!r} "
                f"({exc}); check the connection's key_file/private_key or password"
            ) from exc
        try:
            yield client
        finally:
            managed.__exit__(None, None, None)

    def test_connection(self) -> tuple[bool, str]:
        """``(ok, message)`` for the UI's Test button: the same checks as a task, then the remote
        working directory. The message names the cause, never a password or key."""
        try:
            with self.verified_client() as sftp:
                return (
                    True,
                    f"connected to {self.remote_host}:{self.port} as {self.username!r}: {sftp.normalize('.')}",
                )
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
