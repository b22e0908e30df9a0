"""The ES-subset server, driven by the real elasticsearch-py client in both emulated majors.

These tests pin the server to Elasticsearch's documented behaviour so it cannot drift into a mock that
accepts anything: strict mappings, type checks, per-item bulk results, refresh visibility, atomic aliases.
"""

from __future__ import annotations

import re

import elasticsearch
import pytest
import requests

from etlkit.hooks.elasticsearch import compat_transport_class
from etlkit.movies.index import index_body

pytestmark = pytest.mark.movies

DOC = {
    "id": "a",
    "imdb_rating": 7.5,
    "genre": ["Drama"],
    "title": "A",
    "description": None,
    "director": [],
    "actors_names": ["Ann"],
    "actors": [{"id": "p1", "name": "Ann"}],
    "writers_names": [],
    "writers": [],
}


@pytest.fixture(params=[8, 9])
def server(request, es_factory):
    return es_factory(request.param)


@pytest.fixture
def client(server):
    """The 9.x client pinned to the server's major, as the pipeline's hook builds it."""
    kwargs = (
        {"transport_class": compat_transport_class(server.cluster.major)} if server.cluster.major == 8 else {}
    )
    with elasticsearch.Elasticsearch(server.url, max_retries=0, **kwargs) as es:
        yield es


@pytest.fixture
def movies(client):
    client.indices.create(index="movies_1", **index_body())
    return "movies_1"


def test_root_info_and_product_header(server, client):
    info = client.info()
    assert info["version"]["number"].startswith(f"{server.cluster.major}.")
    assert {"name", "cluster_name", "cluster_uuid", "tagline"} <= set(info.body)
    assert info.meta.headers["x-elastic-product"] == "Elasticsearch"


def test_compatibility_headers_are_checked_against_the_emulated_major(server):
    major = server.cluster.major
    plain = requests.get(server.url, headers={"Accept": "application/json"}, timeout=5)
    assert plain.status_code == 200
    for version, accepted in [(major, True), (major - 1, True), (major + 1, False), (major - 2, False)]:
        answer = requests.get(
            server.url,
            headers={"Accept": f"application/vnd.elasticsearch+json; compatible-with={version}"},
            timeout=5,
        )
        assert (answer.status_code == 200) is accepted, version
        if not accepted:
            assert answer.json()["error"]["type"] == "media_type_header_exception"
    mixed = requests.post(
        f"{server.url}/x/_count",
        headers={
            "Accept": f"application/vnd.elasticsearch+json; compatible-with={major}",
            "Content-Type": f"application/vnd.elasticsearch+json; compatible-with={major - 1}",
        },
        data=b"{}",
        timeout=5,
    )
    assert mixed.status_code == 400
    assert mixed.headers["X-Elastic-Product"] == "Elasticsearch"


def test_unpinned_9x_client_is_rejected_by_an_8x_server(es_factory):
    server = es_factory(8)
    with (
        elasticsearch.Elasticsearch(server.url, max_retries=0) as es,
        pytest.raises(elasticsearch.BadRequestError, match="media_type_header_exception"),
    ):
        es.count(index="movies")


def test_index_create_exists_mapping_settings(client, movies):
    assert client.indices.exists(index=movies)
    assert not client.indices.exists(index="nope")
    assert client.indices.get_mapping(index=movies)[movies]["mappings"] == index_body()["mappings"]
    settings = client.indices.get_settings(index=movies)[movies]["settings"]["index"]
    assert settings["refresh_interval"] == "1s"
    assert settings["analysis"] == index_body()["settings"]["analysis"]
    with pytest.raises(elasticsearch.BadRequestError, match="resource_already_exists_exception"):
        client.indices.create(index=movies, **index_body())
    for bad in ["Movies", "_movies", "-m", "a*b"]:
        with pytest.raises(elasticsearch.BadRequestError, match="invalid_index_name_exception"):
            client.indices.create(index=bad)
    with pytest.raises(elasticsearch.BadRequestError, match="mapper_parsing_exception"):
        client.indices.create(index="geo", mappings={"properties": {"p": {"type": "geo_point"}}})
    with pytest.raises(elasticsearch.NotFoundError, match="index_not_found_exception"):
        client.indices.get(index="missing")


def test_strict_mapping_and_types_are_enforced_per_bulk_item(client, movies):
    operations = []
    bad = {
        "unknown": {**DOC, "id": "u", "extra": 1},
        "nested_unknown": {**DOC, "id": "n", "actors": [{"id": "p", "name": "x", "age": 3}]},
        "keyword_number": {**DOC, "id": "k", "genre": [5]},
        "text_bool": {**DOC, "id": "t", "title": True},
        "float_word": {**DOC, "id": "f", "imdb_rating": "high"},
        "float_bool": {**DOC, "id": "b", "imdb_rating": True},
        "nested_scalar": {**DOC, "id": "s", "writers": ["Ann"]},
    }
    good = {
        "ok": DOC,
        "float_string": {**DOC, "id": "fs", "imdb_rating": "7.5"},
        "nulls_and_empty": {**DOC, "id": "ne", "imdb_rating": None, "genre": [], "actors": []},
        "nested_object": {**DOC, "id": "no", "writers": {"id": "w", "name": "W"}},
    }
    for name, document in {**bad, **good}.items():
        operations += [{"index": {"_id": name}}, document]
    response = client.bulk(operations=operations, index=movies)
    assert response["errors"] is True
    results = {item["index"]["_id"]: item["index"] for item in response["items"]}
    for name in good:
        assert results[name]["status"] == 201 and results[name]["result"] == "created", name
    for name in bad:
        assert results[name]["status"] == 400, name
    assert results["unknown"]["error"]["type"] == "strict_dynamic_mapping_exception"
    assert results["nested_unknown"]["error"]["type"] == "strict_dynamic_mapping_exception"
    for name in ("keyword_number", "text_bool", "float_word", "float_bool", "nested_scalar"):
        assert results[name]["error"]["type"] == "document_parsing_exception", name


def test_bulk_versions_deletes_and_malformed_ndjson(server, client, movies):
    first = client.bulk(operations=[{"index": {"_id": "a"}}, DOC], index=movies)["items"][0]["index"]
    again = client.bulk(
        operations=[{"index": {"_id": "a"}}, DOC, {"delete": {"_id": "zz"}}, {"create": {"_id": "a"}}, DOC],
        index=movies,
    )["items"]
    assert (first["result"], first["_version"], first["status"]) == ("created", 1, 201)
    assert (again[0]["index"]["result"], again[0]["index"]["_version"]) == ("updated", 2)
    assert (again[1]["delete"]["result"], again[1]["delete"]["status"]) == ("not_found", 404)
    assert again[2]["create"]["status"] == 409
    deleted = client.bulk(operations=[{"delete": {"_id": "a"}}], index=movies)["items"][0]["delete"]
    assert (deleted["result"], deleted["status"]) == ("deleted", 200)
    answer = requests.post(
        f"{server.url}/{movies}/_bulk",
        data=b'{"index": {"_id": "x"}}\n{"id": "x"}\n{not an action\n',
        headers={"Content-Type": "application/x-ndjson"},
        timeout=5,
    )
    assert answer.status_code == 400  # a malformed action line fails the whole request
    assert answer.json()["error"]["type"] == "x_content_parse_exception"
    assert client.count(index=movies)["count"] == 0 and not client.exists(index=movies, id="x")
    broken_source = requests.post(
        f"{server.url}/{movies}/_bulk",
        data=b'{"index": {"_id": "y"}}\n{broken source\n',
        headers={"Content-Type": "application/x-ndjson"},
        timeout=5,
    ).json()["items"][0]["index"]
    assert (broken_source["status"], broken_source["error"]["type"]) == (400, "document_parsing_exception")


def test_refresh_visibility_count_get_and_search(client, movies):
    ids = [f"id-{n:02d}" for n in range(25)]
    operations = []
    for doc_id in reversed(ids):
        operations += [{"index": {"_id": doc_id}}, {**DOC, "id": doc_id}]
    client.bulk(operations=operations, index=movies)
    assert client.count(index=movies)["count"] == 0  # not refreshed yet
    assert client.get(index=movies, id="id-03")["_source"]["id"] == "id-03"  # GET is realtime
    client.indices.refresh(index=movies)
    assert client.count(index=movies)["count"] == 25
    page = client.search(index=movies, sort=[{"id": "asc"}], size=10, source=False)
    assert [h["_id"] for h in page["hits"]["hits"]] == ids[:10]
    assert "_source" not in page["hits"]["hits"][0]
    assert page["hits"]["total"] == {"value": 25, "relation": "eq"}
    rest = client.search(
        index=movies, sort=[{"id": "asc"}], size=100, search_after=page["hits"]["hits"][-1]["sort"]
    )
    assert [h["_id"] for h in rest["hits"]["hits"]] == ids[10:]
    desc = client.search(index=movies, sort=[{"id": {"order": "desc"}}], size=2)
    assert [h["_id"] for h in desc["hits"]["hits"]] == ["id-24", "id-23"]
    with pytest.raises(elasticsearch.BadRequestError):
        client.search(index=movies, query={"match": {"title": "A"}})
    with pytest.raises(elasticsearch.BadRequestError):
        client.search(index=movies, sort=[{"title": "asc"}])  # text fields are not sortable
    with pytest.raises(elasticsearch.NotFoundError):
        client.get(index=movies, id="absent")
    client.bulk(operations=[{"index": {"_id": "r"}}, {**DOC, "id": "r"}], index=movies, refresh="wait_for")
    assert client.count(index=movies)["count"] == 26


def test_a_page_beyond_the_result_window_is_refused_and_id_streaming_stays_within_it(client, movies):
    from etlkit.movies.target import stream_index_ids

    ids = [f"id-{n:02d}" for n in range(3)]
    client.bulk(
        operations=[x for i in ids for x in ({"index": {"_id": i}}, {**DOC, "id": i})],
        index=movies,
        refresh=True,
    )
    with pytest.raises(elasticsearch.BadRequestError, match="Result window is too large"):
        client.search(index=movies, sort=[{"id": "asc"}], size=10_001, search_after=["id-00"])
    assert list(stream_index_ids(client, movies, page_size=50_000)) == ids  # a large batch_size param


def test_aliases_are_atomic_and_resolve_for_reads_and_writes(client, movies):
    client.indices.create(index="movies_2", **index_body())
    client.indices.update_aliases(actions=[{"add": {"index": movies, "alias": "movies"}}])
    assert client.indices.exists(index="movies")
    assert set(client.indices.get_alias(name="movies")) == {movies}
    client.bulk(operations=[{"index": {"_id": "a"}}, DOC], index="movies", refresh=True)
    assert client.count(index="movies")["count"] == 1
    with pytest.raises(elasticsearch.NotFoundError):  # the failing second action cancels the first
        client.indices.update_aliases(
            actions=[
                {"remove": {"index": movies, "alias": "movies"}},
                {"add": {"index": "movies_missing", "alias": "movies"}},
            ]
        )
    assert set(client.indices.get_alias(name="movies")) == {movies}
    with pytest.raises(elasticsearch.BadRequestError):  # DELETE takes concrete names only
        client.indices.delete(index="movies")
    with pytest.raises(elasticsearch.BadRequestError, match="invalid_index_name_exception"):
        client.indices.create(index="movies")
    client.indices.update_aliases(actions=[{"add": {"index": "movies_2", "alias": "movies"}}])
    with pytest.raises(elasticsearch.BadRequestError, match="no write index"):
        client.index(index="movies", id="b", document=DOC)
    with pytest.raises(elasticsearch.NotFoundError):
        client.indices.get_alias(name="nothing")


def test_alias_may_take_the_name_of_an_index_removed_in_the_same_request(client, movies):
    client.indices.create(index="legacy", **index_body())
    with pytest.raises(elasticsearch.BadRequestError, match="invalid_alias_name_exception"):
        client.indices.update_aliases(actions=[{"add": {"index": movies, "alias": "legacy"}}])
    client.indices.update_aliases(
        actions=[{"remove_index": {"index": "legacy"}}, {"add": {"index": movies, "alias": "legacy"}}]
    )
    assert set(client.indices.get(index="legacy")) == {movies}


def test_fault_switches(server, client, movies):
    server.cluster.fail_next("count", count=1, status=503)
    with pytest.raises(elasticsearch.ApiError) as failure:
        client.count(index=movies)
    assert failure.value.meta.status == 503
    assert client.count(index=movies)["count"] == 0
    server.cluster.fail_ids({"a": 429}, times=1)
    first = client.bulk(operations=[{"index": {"_id": "a"}}, DOC, {"index": {"_id": "b"}}, DOC], index=movies)
    assert [i["index"]["status"] for i in first["items"]] == [429, 201]
    assert first["items"][0]["index"]["error"]["type"] == "es_rejected_execution_exception"
    second = client.bulk(operations=[{"index": {"_id": "a"}}, DOC], index=movies)
    assert second["items"][0]["index"]["status"] == 201
    server.go_down()
    with pytest.raises(elasticsearch.ConnectionError):
        client.info()
    server.come_up()
    assert client.info()["cluster_name"] == "etlkit"


def test_security_and_content_length_switches(server, movies):
    server.cluster.require_basic_auth("elastic", "right")
    kwargs = (
        {"transport_class": compat_transport_class(server.cluster.major)} if server.cluster.major == 8 else {}
    )
    with elasticsearch.Elasticsearch(
        server.url, max_retries=0, basic_auth=("elastic", "wrong"), **kwargs
    ) as es:
        with pytest.raises(elasticsearch.AuthenticationException) as refused:
            es.count(index=movies)
        assert refused.value.meta.status == 401
        assert "unable to authenticate user [elastic]" in str(refused.value)
    with elasticsearch.Elasticsearch(
        server.url, max_retries=0, basic_auth=("elastic", "right"), **kwargs
    ) as es:
        assert es.count(index=movies)["count"] == 0
        server.cluster.max_content_length = 100
        with pytest.raises(elasticsearch.ApiError) as too_large:
            es.bulk(operations=[{"index": {"_id": "a"}}, DOC], index=movies)
        assert too_large.value.meta.status == 413
    # The server hung up after the 413, as ES does; a new connection is served.
    with elasticsearch.Elasticsearch(
        server.url, max_retries=0, basic_auth=("elastic", "right"), **kwargs
    ) as es:
        assert es.count(index=movies)["count"] == 0


def _drifted_body(change):
    body = index_body()
    change(body)
    return body


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda b: b["mappings"]["properties"]["title"].update(analyser="ru_en"),
            "unknown parameter [analyser] on mapper [title] of type [text]",
        ),
        (
            lambda b: b["mappings"]["properties"]["title"]["fields"]["raw"].update(ignore_abov=256),
            "unknown parameter [ignore_abov] on mapper [title.raw] of type [keyword]",
        ),
        (
            lambda b: b["mappings"]["properties"]["actors"]["properties"]["name"].update(analyzer="ru_eng"),
            "analyzer [ru_eng] has not been configured",
        ),
        (
            lambda b: b["settings"]["analysis"]["analyzer"]["ru_en"]["filter"].append("russian_stemer"),
            "failed to find filter under name [russian_stemer]",
        ),
        (
            lambda b: b["settings"]["analysis"]["filter"]["russian_stemmer"].update(language="rusian"),
            "Unknown Stemmer language [rusian]",
        ),
        (
            lambda b: b["settings"]["analysis"]["filter"]["english_stop"].update(stopwords="_englsh_"),
            "unknown stopwords list [_englsh_]",
        ),
        (
            lambda b: b["settings"]["analysis"]["analyzer"]["ru_en"].update(tokenizer="standart"),
            "failed to find tokenizer under name [standart]",
        ),
    ],
)
def test_index_bodies_real_elasticsearch_refuses_are_refused(client, change, message):
    with pytest.raises(elasticsearch.BadRequestError, match=re.escape(message)):
        client.indices.create(index="movies_2", **_drifted_body(change))
    assert not client.indices.exists(index="movies_2")


def test_creating_an_existing_index_answers_as_elasticsearch_8_does(server, client, movies):
    """Real ES: 400 with the type, ``index [<name>/<uuid>] already exists``, ``index_uuid`` and ``index``,
    the same object in ``root_cause``."""
    uuid = client.indices.get_settings(index=movies)[movies]["settings"]["index"]["uuid"]
    with pytest.raises(elasticsearch.BadRequestError) as raised:
        client.indices.create(index=movies, **index_body())

    cause = {
        "type": "resource_already_exists_exception",
        "reason": f"index [{movies}/{uuid}] already exists",
        "index_uuid": uuid,
        "index": movies,
    }
    assert raised.value.meta.status == 400
    assert raised.value.body == {"error": {"root_cause": [cause], **cause}, "status": 400}
    assert list(raised.value.body["error"]) == ["root_cause", "type", "reason", "index_uuid", "index"]
