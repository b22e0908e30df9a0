"""VerifiedSFTPHook: declared like a provider's hook, and its test_connection (the UI's Test button)
against the real sshd."""

from __future__ import annotations

import pytest

from dev.sshd import free_port
from etlkit.hooks.sftp import VerifiedSFTPHook
from tests.visits.test_sftp_failures import other_public_key

pytestmark = pytest.mark.visits


def test_the_hook_declares_its_connection():
    assert VerifiedSFTPHook.conn_name_attr == "ssh_conn_id"
    assert VerifiedSFTPHook.default_conn_name == "sftp_visits"
    assert VerifiedSFTPHook.conn_type == "sftp"
    assert VerifiedSFTPHook.hook_name


def test_a_good_connection_tests_true_and_opens_nothing_before(sshd, airflow_conn):
    airflow_conn("sftp_visits", sshd.connection())
    hook = VerifiedSFTPHook()
    assert hook.ssh_conn_id == "sftp_visits"
    assert hook._sftp_conn is None and hook._ssh_conn is None  # lazy: nothing opened in __init__
    ok, message = hook.test_connection()
    assert ok is True, message
    assert f"127.0.0.1:{sshd.port}" in message


def test_refused_credentials_test_false_with_the_cause(sshd, airflow_conn, tmp_path):
    airflow_conn("sftp_visits", sshd.connection(key_file=str(other_public_key(tmp_path))))
    ok, message = VerifiedSFTPHook().test_connection()
    assert ok is False
    assert "refused the credentials" in message


def test_a_wrong_host_tests_false_with_the_cause(sshd, airflow_conn):
    connection = sshd.connection()
    connection["port"] = free_port()  # nothing listens there
    airflow_conn("sftp_visits", connection)
    ok, message = VerifiedSFTPHook().test_connection()
    assert ok is False
    assert "Unable to connect" in message


def test_a_password_never_appears_in_the_message(sshd, airflow_conn):
    connection = sshd.connection()
    connection["extra"].pop("key_file", None)
    connection["extra"].pop("private_key", None)
    connection["password"] = "s3cret-Pa55word"
    airflow_conn("sftp_visits", connection)
    ok, message = VerifiedSFTPHook().test_connection()
    assert ok is False
    assert "s3cret-Pa55word" not in message
