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
