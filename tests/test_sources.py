"""Where book files and photos come from (steps/core/sources.py): the book folder, s3://,
https://, and plain http:// only from the hosts the operator lists; the download's size limit,
timeout and the reason for each way it fails."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from steps.core import sources
from steps.core.errors import InputError
from steps.core.sources import check_http, download, fetch, http_allowed
from steps.core.store import LocalStore, StoreError

# ---- plain http:// ----------------------------------------------------------------------

@pytest.mark.parametrize("listed,url,allowed", [
    ("books.example", "http://books.example/p.png", True),
    ("books.example", "http://BOOKS.Example/p.png", True),              # host names ignore case
    ("Books.Example", "http://books.example/p.png", True),
    ("books.example", "http://books.example:80/p.png", True),           # no port listed: 80
    ("books.example:80", "http://books.example/p.png", True),
    ("books.example", "http://books.example:8080/p.png", False),
    ("books.example:8080", "http://books.example:8080/p.png", True),
    ("books.example:8080", "http://books.example/p.png", False),
    ("books.example:8080", "http://books.example:8081/p.png", False),
    (" x.test , books.example ", "http://books.example/p.png", True),   # spaces around entries
    ("x.test,books.example", "http://x.test/p.png", True),
    ("x.test", "http://books.example/p.png", False),
    ("books.example", "http://books.example.evil.test/p.png", False),
    ("books.example", "http://evil.test/books.example", False),
    ("books.example", "http://books.example@evil.test/p.png", False),  # the host is evil.test
    ("", "http://books.example/p.png", False),
    (",,", "http://books.example/p.png", False),
    ("[::1]:8080", "http://[::1]:8080/p.png", True),
    ("[::1]", "http://[::1]/p.png", True),
    ("[::1]", "http://[::1]:8080/p.png", False),
    ("books.example:http, x.test", "http://books.example/p.png", False),  # a broken entry
    ("books.example:http, x.test", "http://x.test/p.png", True),          # ... lists nothing
    ("books.example", "http://books.example:99999/p.png", False),        # no such port
    ("books.example", "http:///p.png", False),                            # no host at all
])
def test_plain_http_goes_only_to_listed_hosts(monkeypatch, listed, url, allowed):
    monkeypatch.setenv("BOOKJOB_ALLOW_HTTP_HOSTS", listed)
    assert http_allowed(url) is allowed


def test_a_refused_http_address_is_named_cut_short(monkeypatch):
    monkeypatch.setenv("BOOKJOB_ALLOW_HTTP_HOSTS", "")
    url = "http://books.example/" + "p" * 200
    with pytest.raises(InputError) as e:
        check_http(url, "The photo")
    assert e.value.reason == "http_not_allowed"
    assert e.value.message == (f"The photo {url[:100]!r} is plain http:// on a host not in "
                               "BOOKJOB_ALLOW_HTTP_HOSTS; use https://, or ask the operator to "
                               "list the host.")
    monkeypatch.setenv("BOOKJOB_ALLOW_HTTP_HOSTS", "books.example")
    assert check_http(url, "The photo") is None


# ---- fetching book files -----------------------------------------------------------------

@pytest.mark.parametrize("ref", ["pages/nope.png", "../book.yaml", "/etc/passwd"])
def test_fetch_of_a_missing_or_outside_file(tmp_path, ref):
    with pytest.raises(InputError) as e:
        fetch(ref, LocalStore(tmp_path))
    assert e.value.reason == "missing_file"
    assert e.value.message == (f"Book file {ref!r} does not exist in the book; add it or fix the "
                               "manifest.")


@pytest.mark.parametrize("ref", ["gopher://x/p.png", "ftp://x/p.png"])
def test_fetch_refuses_other_addresses(tmp_path, ref):
    with pytest.raises(InputError) as e:
        fetch(ref, LocalStore(tmp_path))
    assert e.value.reason == "bad_manifest"
    assert e.value.message == f"Book file {ref!r} must be a relative path, s3:// or https:// address."


def test_fetch_from_s3(bucket, tmp_path):
    import boto3

    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="top.png", Body=b"at the root")
    s3.put_object(Bucket=bucket, Key="deep/er/p.png", Body=b"deep")
    s3.put_object(Bucket=bucket, Key="fonts/BOX", Body=b"a name ending in X")
    book_files = LocalStore(tmp_path)
    assert fetch(f"s3://{bucket}/top.png", book_files) == b"at the root"
    assert fetch(f"s3://{bucket}/deep/er/p.png", book_files) == b"deep"
    assert fetch(f"s3://{bucket}/fonts/BOX", book_files) == b"a name ending in X"
    with pytest.raises(InputError) as e:
        fetch(f"s3://{bucket}/deep/none.png", book_files)
    assert e.value.reason == "missing_file"
    assert e.value.message == (f"Book file s3://{bucket}/deep/none.png does not exist; upload it or "
                               "fix the manifest.")


class Files:
    """A loopback HTTP server: ``/ok`` answers ``body``, ``/<code>`` answers that status,
    ``/stall`` promises ten times ``body`` but sends it once and then nothing for 5 s."""

    def __init__(self, body: bytes):
        files = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):
                pass

            def do_GET(self):
                if self.path == "/stall":
                    self.send_response(200)
                    self.send_header("Content-Length", str(10 * len(files.body)))
                    self.end_headers()
                    self.wfile.write(files.body)
                    self.wfile.flush()
                    time.sleep(5)
                    return
                code = 200 if self.path == "/ok" else int(self.path.strip("/"))
                payload = files.body if code == 200 else b"no"
                self.send_response(code)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.body = body
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


LIMIT = 2 * 2**20


@pytest.fixture
def files(monkeypatch):
    monkeypatch.setattr(sources, "MAX_DOWNLOAD", LIMIT)
    monkeypatch.setattr(sources, "DOWNLOAD_TIMEOUT_S", 1)
    server = Files(b"x" * LIMIT)
    yield server
    server.close()


def test_a_download_up_to_the_limit_is_read(files):
    assert sources._download(files.url + "/ok") == b"x" * LIMIT


@pytest.mark.parametrize("path", ["/ok", "/stall"])
def test_a_download_over_the_limit_is_refused_without_reading_on(files, path):
    files.body = b"x" * (LIMIT + 1)
    with pytest.raises(InputError) as e:
        sources._download(files.url + path)
    assert e.value.reason == "image_too_large"   # /stall: read one byte past the limit, no further
    assert e.value.message == f"Book file {files.url}{path} is larger than 2 MiB; use a smaller file."


def test_a_stalled_download_times_out(files):
    files.body = b"x" * 10
    with pytest.raises(InputError) as e:
        sources._download(files.url + "/stall")
    assert e.value.reason == "unreachable_file"
    assert e.value.message == (f"Book file {files.url}/stall could not be fetched (timed out); check "
                               "the address or host the file with the book.")


@pytest.mark.parametrize("code", [404, 403, 410, 600])
def test_a_download_refused_by_the_server_is_a_missing_file(files, code):
    with pytest.raises(InputError) as e:
        sources._download(f"{files.url}/{code}")
    assert e.value.reason == "missing_file"
    assert e.value.message == f"Book file {files.url}/{code} answered HTTP {code}; check the address."


@pytest.mark.parametrize("code", [500, 503, 599])
def test_a_download_failing_on_the_server_is_transient(files, code):
    with pytest.raises(StoreError, match=f"^{files.url}/{code} answered {code}$"):
        sources._download(f"{files.url}/{code}")


def test_an_unreachable_address_is_its_own_reason(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"https://127.0.0.1:{port}/p.png"
    with pytest.raises(InputError) as e:
        fetch(url, LocalStore(tmp_path))                # https:// goes to the download
    assert e.value.reason == "unreachable_file"
    assert e.value.message == (f"Book file {url} could not be fetched ([Errno 111] Connection "
                               "refused); check the address or host the file with the book.")


def test_fetch_of_plain_http_asks_the_operators_list_first(files, monkeypatch, tmp_path):
    url = files.url + "/ok"
    monkeypatch.setenv("BOOKJOB_ALLOW_HTTP_HOSTS", "books.example")
    with pytest.raises(InputError) as e:
        fetch(url, LocalStore(tmp_path))
    assert e.value.reason == "http_not_allowed"
    assert e.value.message.startswith(f"Book file {url!r} is plain http://")
    monkeypatch.setenv("BOOKJOB_ALLOW_HTTP_HOSTS", f"books.example,{files.url[7:]}")
    assert fetch(url, LocalStore(tmp_path)) == files.body


@pytest.mark.parametrize("key", ["", "/", "../p.png", "a/./p.png"])
def test_fetch_of_an_s3_address_without_a_safe_key(bucket, tmp_path, key):
    with pytest.raises(InputError) as e:
        fetch(f"s3://{bucket}/{key}", LocalStore(tmp_path))
    assert e.value.reason == "missing_file"
    assert e.value.message == (f"Book file s3://{bucket}/{key} does not exist; upload it or "
                               "fix the manifest.")


def test_download_names_what_it_fetches(files, monkeypatch):
    monkeypatch.setenv("BOOKJOB_ALLOW_HTTP_HOSTS", files.url[7:])
    assert download(files.url + "/ok", "The photo") == files.body
    with pytest.raises(InputError) as e:
        download(files.url + "/404", "The photo")
    assert e.value.message == f"The photo {files.url}/404 answered HTTP 404; check the address."
    files.body = b"x" * (LIMIT + 1)
    with pytest.raises(InputError) as e:
        download(files.url + "/ok")
    assert e.value.message == f"Book file {files.url}/ok is larger than 2 MiB; use a smaller file."


def test_download_refuses_unlisted_http_and_other_schemes(files, monkeypatch):
    monkeypatch.setenv("BOOKJOB_ALLOW_HTTP_HOSTS", "books.example")
    with pytest.raises(InputError) as e:
        download(files.url + "/ok", "The photo")
    assert e.value.reason == "http_not_allowed"
    assert e.value.message.startswith(f"The photo {files.url + '/ok'!r} is plain http://")
    for url in ["ftp://books.example/p.png", "file:///etc/passwd", "HTTPS://books.example/p"]:
        with pytest.raises(InputError) as e:
            download(url, "The photo")
        assert e.value.reason == "bad_address"
        assert e.value.message == f"The photo {url!r} is not an http(s):// address."
    with pytest.raises(InputError) as e:
        download("ftp://x/" + "p" * 200)
    assert e.value.message == f"Book file {'ftp://x/' + 'p' * 92!r} is not an http(s):// address."


def test_download_of_https_goes_out_without_the_list(monkeypatch):
    monkeypatch.setenv("BOOKJOB_ALLOW_HTTP_HOSTS", "")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError) as e:
        download(f"https://127.0.0.1:{port}/p.png", "The photo")
    assert e.value.reason == "unreachable_file"          # tried, not refused
    assert e.value.message.startswith(f"The photo https://127.0.0.1:{port}/p.png could not be")
