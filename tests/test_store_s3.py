"""The S3 store against the moto server over HTTP: paged listings, a bucket without a prefix,
content types, every answer S3 gives a conditional write that lost, and the client's settings.

Error answers other than moto's own come from tests/doubles/s3_proxy.py, which answers with the
status and ``<Code>`` S3 documents for them (``ConditionalRequestConflict`` is S3's 409 for a
conditional write racing another; a HEAD answer has no body, so botocore takes the status as the
code: botocore/parsers.py, ``_do_error_parse`` of the rest-xml parser)."""

from __future__ import annotations

import boto3
import pytest

from steps.core.store import (
    S3Store,
    StoreError,
    _s3_client,
    content_type,
    open_store,
    split_s3_uri,
)
from tests.doubles.s3_proxy import S3Proxy


@pytest.fixture
def proxy(s3_endpoint, monkeypatch):
    p = S3Proxy(s3_endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", p.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    yield p
    p.stop()


def is_put(method, path):
    return method == "PUT"


@pytest.mark.parametrize("uri,bucket,prefix", [
    ("s3://b", "b", ""), ("s3://b/", "b", ""), ("s3://b/p", "b", "p/"), ("s3://b/p/q/", "b", "p/q/"),
    ("s3://b//p//", "b", "p/"), ("b/p", "b", "p/")])
def test_split_s3_uri(uri, bucket, prefix):
    assert split_s3_uri(uri) == (bucket, prefix)


@pytest.mark.parametrize("uri,canonical", [
    ("s3://b", "s3://b"), ("s3://b/", "s3://b"), ("s3://b/books/BOX", "s3://b/books/BOX"),
    ("s3://b/books/BOX/", "s3://b/books/BOX"), ("s3://b//p//", "s3://b/p")])
def test_a_store_is_named_by_its_bucket_and_prefix(uri, canonical):
    assert S3Store(uri, client=object()).uri == canonical


@pytest.mark.parametrize("uri", ["s3://", "s3:///prefix"])
def test_a_uri_without_a_bucket_is_refused(uri):
    with pytest.raises(ValueError, match=f"^{uri!r} names no bucket; use s3://bucket/prefix$"):
        S3Store(uri, client=object())


def test_open_store_chooses_by_scheme(s3_endpoint):
    store = open_store("s3://some-bucket/p/")
    assert isinstance(store, S3Store) and store.uri == "s3://some-bucket/p"
    assert (store.bucket, store.prefix) == ("some-bucket", "p/")
    with pytest.raises(ValueError, match=r"^unsupported store 'ftp://x/y': use a folder or s3://bucket/prefix$"):
        open_store("ftp://x/y")


@pytest.mark.parametrize("prefix", ["", "deep/er/prefix"])
def test_keys_are_relative_to_the_prefix(bucket, prefix):
    store = S3Store(f"s3://{bucket}/{prefix}")
    store.write("layout/j/pages/page_01.png", b"one")
    s3 = boto3.client("s3")
    full = f"{prefix}/layout/j/pages/page_01.png".lstrip("/")
    assert s3.get_object(Bucket=bucket, Key=full)["Body"].read() == b"one"
    assert store.list("layout/") == ["layout/j/pages/page_01.png"]
    assert store.exists("layout/j/pages/page_01.png") and not store.exists("layout/j/pages/page_02.png")
    s3.put_object(Bucket=bucket, Key="elsewhere/x.png", Body=b"not ours")
    assert store.list("") == (["elsewhere/x.png"] if not prefix else []) + ["layout/j/pages/page_01.png"]


def test_listings_are_paged_to_the_end(proxy, bucket):
    store = S3Store(f"s3://{bucket}/p")
    keys = [f"layout/j/pages/page_{n:02d}.png" for n in range(1, 8)]
    for key in reversed(keys):
        store.write(key, b"x")
    store.write("layout/k/pages/page_01.png", b"other job")

    def listings():
        return proxy.count("forward", lambda method, path: "list-type=2" in path)

    store.list_page_size = 2                 # 7 keys: four pages, three continuation tokens
    assert store.list("layout/j/") == keys
    assert listings() == 4
    store.list_page_size = 7                 # exactly one full page
    assert store.list("layout/j/") == keys
    assert listings() == 4 + 1


def test_objects_carry_their_content_type(bucket):
    store = S3Store(f"s3://{bucket}")
    s3 = boto3.client("s3")
    for key, kind in [("a/page.png", "image/png"), ("a/book.pdf", "application/pdf"),
                      ("jobs/j/job.json", "application/json"), ("a/blob.xyz123", "application/octet-stream")]:
        store.write(key, b"x")
        assert s3.head_object(Bucket=bucket, Key=key)["ContentType"] == kind
    assert store.write_if("jobs/k/job.json", b"{}", None)
    assert s3.head_object(Bucket=bucket, Key="jobs/k/job.json")["ContentType"] == "application/json"
    assert content_type("x.jpg") == "image/jpeg" and content_type("noext") == "application/octet-stream"


def test_the_version_is_the_etag(bucket):
    store = S3Store(f"s3://{bucket}/p")
    store.write("jobs/j/job.json", b"v1")
    data, version = store.read_versioned("jobs/j/job.json")
    assert data == b"v1"
    assert version == boto3.client("s3").head_object(Bucket=bucket, Key="p/jobs/j/job.json")["ETag"]


def test_an_if_match_on_a_missing_object_is_a_lost_swap(bucket):
    store = S3Store(f"s3://{bucket}/p")
    assert not store.write_if("jobs/j/job.json", b"v1", '"0123456789abcdef0123456789abcdef"')
    assert not store.exists("jobs/j/job.json")


@pytest.mark.parametrize("status,code", [("412", "PreconditionFailed"), ("409", "ConditionalRequestConflict"),
                                         ("412", ""), ("409", "")])
def test_every_answer_to_a_lost_conditional_write_is_a_lost_swap(proxy, bucket, status, code):
    store = S3Store(f"s3://{bucket}/p")
    assert store.write_if("jobs/j/job.json", b"v1", None)
    _, version = store.read_versioned("jobs/j/job.json")
    proxy.fault(status, times=float("inf"), match=is_put, code=code)
    assert store.write_if("jobs/j/job.json", b"v2", version) is False
    assert store.write_if("jobs/j/new.json", b"v2", None) is False
    assert proxy.count(status) == 2
    proxy.clear()
    assert store.read("jobs/j/job.json") == b"v1"


@pytest.mark.parametrize("status,code", [("404", "NoSuchKey"), ("404", "NotFound"), ("404", "")])
def test_every_not_found_answer_is_a_missing_object(proxy, bucket, status, code):
    store = S3Store(f"s3://{bucket}/p")
    store.write("a/b.png", b"x")
    proxy.fault(status, times=float("inf"), match=lambda m, p: m in ("GET", "HEAD"), code=code)
    with pytest.raises(FileNotFoundError):
        store.read("a/b.png")
    assert store.read_versioned("a/b.png") is None
    assert not store.exists("a/b.png")


def test_a_missing_object_names_its_key(bucket):
    with pytest.raises(FileNotFoundError, match="^p/a/none.png$"):
        S3Store(f"s3://{bucket}/p").read("a/none.png")


@pytest.mark.parametrize("status,code", [("403", "AccessDenied"), ("400", "InvalidRequest")])
def test_other_refusals_are_store_errors(proxy, bucket, status, code):
    store = S3Store(f"s3://{bucket}/p")
    proxy.fault(status, times=float("inf"), code=code)
    for call in (lambda: store.read("a/b.png"), lambda: store.write("a/b.png", b"x"),
                 lambda: store.write_if("a/b.png", b"x", None), lambda: store.list("a/")):
        with pytest.raises(StoreError, match=rf"^S3 \w+ s3://{bucket}/p: .*\({code}\)"):
            call()


def test_a_missing_bucket_is_a_store_error(s3_endpoint):
    store = S3Store("s3://no-such-bucket-here/p")
    with pytest.raises(StoreError, match=r"^S3 get_object s3://no-such-bucket-here/p: .*NoSuchBucket"):
        store.read("a/b.png")


def test_an_unreachable_endpoint_is_a_store_error(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # closed again: nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = S3Store("s3://b-unreachable/p")
    with pytest.raises(StoreError, match=r"^S3 put_object s3://b-unreachable/p: Could not connect"):
        store.write("a/b.png", b"x")


def test_the_client_takes_its_retries_and_timeouts_from_the_settings(monkeypatch, s3_endpoint):
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    monkeypatch.delenv("BOOKJOB_S3_CONNECT_TIMEOUT", raising=False)
    monkeypatch.delenv("BOOKJOB_S3_READ_TIMEOUT", raising=False)
    config = _s3_client().meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert (config.connect_timeout, config.read_timeout) == (10.0, 60.0)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("BOOKJOB_S3_CONNECT_TIMEOUT", "3")
    monkeypatch.setenv("BOOKJOB_S3_READ_TIMEOUT", "7.5")
    config = S3Store("s3://b/p").client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}
    assert (config.connect_timeout, config.read_timeout) == (3.0, 7.5)
