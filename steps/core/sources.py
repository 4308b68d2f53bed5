"""Where book files and photos come from: the book folder, ``s3://``, ``https://``, and plain
``http://`` only from the hosts the operator lists (``BOOKJOB_ALLOW_HTTP_HOSTS``), with the
same size limit and timeout for every download."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

from steps.core.errors import InputError
from steps.core.settings import settings
from steps.core.store import Store, StoreError, open_store, split_s3_uri

MAX_DOWNLOAD = 100 * 1024 * 1024
DOWNLOAD_TIMEOUT_S = 30


def fetch(ref: str, book_files: Store) -> bytes:
    """Bytes of a book file: a path relative to the book, ``s3://bucket/key`` or ``https://…``."""
    if ref.startswith("s3://"):
        bucket, key = split_s3_uri(ref)
        try:
            return open_store(f"s3://{bucket}").read(key.rstrip("/"))
        except (FileNotFoundError, ValueError):
            raise InputError("missing_file", f"Book file {ref} does not exist; "
                                             "upload it or fix the manifest.") from None
    if ref.startswith("https://"):
        return _download(ref)
    if ref.startswith("http://"):
        check_http(ref, "Book file")
        return _download(ref)
    if "://" in ref:
        raise InputError("bad_manifest", f"Book file {ref!r} must be a relative path, s3:// or "
                                         "https:// address.")
    try:
        return book_files.read(ref)
    except (FileNotFoundError, ValueError):
        raise InputError("missing_file", f"Book file {ref!r} does not exist in the book; "
                                         "add it or fix the manifest.") from None


def http_allowed(url: str) -> bool:
    """Plain ``http://`` only to the hosts the operator lists in ``BOOKJOB_ALLOW_HTTP_HOSTS``
    (``host[:port]``, comma-separated; an entry without a port means port 80)."""
    try:
        return _host_and_port(url) in _listed_hosts()
    except ValueError:       # no host, or a port that is not a number from 0 to 65535
        return False


def _host_and_port(address: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(address)
    if not parts.hostname:
        raise ValueError(f"{address!r} names no host")
    return parts.hostname, parts.port or 80       # hostname: lower case, IPv6 without brackets


def _listed_hosts() -> set[tuple[str, int]]:
    listed = set()
    for entry in settings().allow_http_hosts.split(","):
        try:
            listed.add(_host_and_port("//" + entry.strip()))
        except ValueError:
            continue         # an empty or broken entry lists nothing
    return listed


def check_http(url: str, what: str) -> None:
    if not http_allowed(url):
        raise InputError("http_not_allowed", f"{what} {url[:100]!r} is plain http:// on a host "
                                             "not in BOOKJOB_ALLOW_HTTP_HOSTS; use https://, or "
                                             "ask the operator to list the host.")


def download(url: str, what: str = "Book file") -> bytes:
    """An ``https://`` (or allowed ``http://``) object, with the book files' size limit and
    timeout."""
    if url.startswith("http://"):
        check_http(url, what)
    elif not url.startswith("https://"):
        raise InputError("bad_address", f"{what} {url[:100]!r} is not an http(s):// address.")
    return _download(url, what)


def _download(url: str, what: str = "Book file") -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data: bytes = response.read(MAX_DOWNLOAD + 1)
    except urllib.error.HTTPError as e:
        if 500 <= e.code < 600:
            raise StoreError(f"{url} answered {e.code}") from e
        raise InputError("missing_file", f"{what} {url} answered HTTP {e.code}; "
                                         "check the address.") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise InputError("unreachable_file", f"{what} {url} could not be fetched ({reason}); "
                                             "check the address or host the file with the book.") from None
    if len(data) > MAX_DOWNLOAD:
        raise InputError("image_too_large", f"{what} {url} is larger than "
                                            f"{MAX_DOWNLOAD // 2**20} MiB; use a smaller file.")
    return data
