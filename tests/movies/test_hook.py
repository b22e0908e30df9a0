"""The Elasticsearch hook: client built from an Airflow connection, pinned to the server's major."""

from __future__ import annotations

import base64
import logging

import pytest

from etlkit.common.errors import ConfigurationError
from etlkit.hooks.elasticsearch import ElasticsearchClientHook, redact_url
from tests.movies.conftest import es_connection

pytestmark = pytest.mark.movies


@pytest.mark.parametrize("major", [8, 9])
def test_major_is_probed_with_plain_json_then_pinned(es_factory, airflow_conn, major):
    server = es_factory(major)
    airflow_conn("es_test", es_connection(server))
    with ElasticsearchClientHook("es_test").get_client() as client:
        client.indices.exists(index="movies")
        client.bulk(operations=[{"delete": {"_id": "x"}}], index="nowhere")
    probe, *requests = server.cluster.requests
    assert probe["endpoint"] == "root" and probe["accept"] == "application/json"
    assert {r["accept"] for r in requests} == {f"application/vnd.elasticsearch+json; compatible-with={major}"}
    assert requests[-1]["content_type"] == f"application/vnd.elasticsearch+x-ndjson; compatible-with={major}"


def test_compatible_with_extra_skips_the_probe_and_auth_is_sent_but_never_logged(
    es_factory, airflow_conn, caplog
):
    server = es_factory(9)
    airflow_conn(
        "es_test",
        {**es_connection(server, compatible_with="8"), "login": "elastic", "password": "s3cr3t-pass"},
    )
    caplog.set_level(logging.DEBUG)
    with ElasticsearchClientHook("es_test").get_client() as client:
        client.indices.exists(index="movies")
    (request,) = server.cluster.requests
    assert request["accept"] == "application/vnd.elasticsearch+json; compatible-with=8"
    assert request["authorization"] == "Basic " + base64.b64encode(b"elastic:s3cr3t-pass").decode()
    assert "s3cr3t-pass" not in caplog.text


def test_api_key_and_tls_options(airflow_conn):
    airflow_conn(
        "es_tls",
        {
            "conn_type": "elasticsearch",
            "host": "search.example.org",
            "port": 9243,
            "schema": "https",
            "extra": {
                "api_key": "k3y",
                "compatible_with": 9,
                "ca_certs": "/etc/ssl/certs/ca-certificates.crt",
            },
        },
    )
    with ElasticsearchClientHook("es_tls").get_client() as client:
        (node,) = client.transport.node_pool.all()
        assert (node.config.scheme, node.config.host, node.config.port) == (
            "https",
            "search.example.org",
            9243,
        )
        assert node.config.verify_certs is True  # TLS verified by default
        assert client._headers["authorization"] == "ApiKey k3y"


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("https://elastic:pw@search.example.org:9243", "https"),  # an https:// URI is TLS, never plain http
        ("http://search.example.org:9200", "http"),
        ("elasticsearch://search.example.org:9200/https", "https"),
        ("elasticsearch://search.example.org:9200", "http"),
        ("https://search.example.org:9243?scheme=http", "http"),  # the explicit extra wins
    ],
)
def test_scheme_comes_from_the_extra_the_schema_or_the_uri(monkeypatch, uri, scheme):
    monkeypatch.setenv("AIRFLOW_CONN_ES_SCHEME", uri)
    assert ElasticsearchClientHook("es_scheme")._settings()["url"].split("://")[0] == scheme


def test_an_unknown_scheme_extra_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ES_SCHEME", "https://search.example.org:9243?scheme=ftp")
    with pytest.raises(ConfigurationError, match="scheme 'ftp' is not http or https"):
        ElasticsearchClientHook("es_scheme")._settings()


def test_urls_are_logged_without_userinfo():
    assert redact_url("https://user:pw@es.example.org:9200/path?q=1") == "https://es.example.org:9200/path"


@pytest.mark.parametrize(
    ("status", "fails_fast"),
    [
        (400, True),
        (401, True),
        (403, True),
        (413, True),
        (404, False),
        (409, False),
        (429, False),
        (503, False),
    ],
)
def test_a_request_refused_for_good_is_bad_input_and_the_rest_propagate(es_factory, status, fails_fast):
    import elasticsearch

    from etlkit.hooks.elasticsearch import ElasticsearchRefusedError, refusals_fail_fast

    server = es_factory(9)
    server.cluster.fail_next("count", status=status)
    expected = ElasticsearchRefusedError if fails_fast else elasticsearch.ApiError
    with (
        elasticsearch.Elasticsearch(server.url, max_retries=0) as client,
        pytest.raises(expected) as caught,
        refusals_fail_fast("es_test"),
    ):
        client.count(index="movies")
    if fails_fast:
        assert f"connection 'es_test' with {status}" in str(caught.value)
        assert caught.value.__cause__.meta.status == status
    else:
        assert caught.value.meta.status == status


def test_the_hook_declares_the_connection_the_docs_give():
    assert ElasticsearchClientHook.default_conn_name == "movies_elasticsearch"
    assert ElasticsearchClientHook.conn_name_attr == "es_conn_id"
    assert (ElasticsearchClientHook.conn_type, ElasticsearchClientHook.hook_name) == (
        "elasticsearch",
        "Elasticsearch (official client)",
    )
    assert ElasticsearchClientHook().es_conn_id == "movies_elasticsearch"


def test_test_connection_succeeds_against_a_live_server_and_opens_nothing_before(es_factory, airflow_conn):
    server = es_factory(8)
    airflow_conn("es_test", es_connection(server))
    hook = ElasticsearchClientHook("es_test")
    assert not server.cluster.requests  # building the hook contacted nothing
    ok, message = hook.test_connection()
    assert ok is True
    assert message.startswith("Elasticsearch 8.") and f"http://127.0.0.1:{server.port}" in message


def test_test_connection_reports_refused_credentials_without_the_password(es_factory, airflow_conn):
    server = es_factory(9)
    server.cluster.require_basic_auth("elastic", "right-pass-42")
    airflow_conn("es_test", {**es_connection(server), "login": "elastic", "password": "wr0ng-pass-17"})
    ok, message = ElasticsearchClientHook("es_test").test_connection()
    assert ok is False
    assert "401" in message and "login/password or api_key" in message
    assert "wr0ng-pass-17" not in message

    airflow_conn("es_test", {**es_connection(server), "login": "elastic", "password": "right-pass-42"})
    assert ElasticsearchClientHook("es_test").test_connection()[0] is True


def test_test_connection_reports_an_unreachable_host(airflow_conn):
    from dev.sshd import free_port

    airflow_conn(
        "es_test",
        {
            "conn_type": "elasticsearch",
            "host": "127.0.0.1",
            "port": free_port(),
            "password": "s3cr3t-pass",
            "login": "elastic",
            "extra": {"compatible_with": 9},
        },
    )
    ok, message = ElasticsearchClientHook("es_test").test_connection()
    assert ok is False
    assert "ConnectionError" in message and "s3cr3t-pass" not in message


def test_the_movies_postgres_connection_test_button(airflow_conn, source_db):
    from dev import pgdb
    from etlkit.hooks.postgres import EtlPostgresHook

    airflow_conn("movies_postgres", pgdb.postgres_connection(source_db))
    assert EtlPostgresHook("movies_postgres").test_connection() == (True, "Connection successfully tested")
    airflow_conn("movies_postgres", {**pgdb.postgres_connection(source_db), "login": "no_such_role_17"})
    ok, message = EtlPostgresHook("movies_postgres").test_connection()
    assert ok is False and "no_such_role_17" in message
