"""The store: a local folder or an S3 bucket + prefix, with the keys of a book job.

Both implementations have the same keys and the same guarantees: a write is atomic (a reader
sees the old object or the new one, never half of one) and :meth:`Store.write_if` is a
compare-and-swap, which is how the job record stays correct with many writers.
"""

from __future__ import annotations

import fcntl
import hashlib
import mimetypes
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath
from typing import Any

from steps.core import faults
from steps.core.errors import TransientError
from steps.core.settings import settings

# ---- keys (DESIGN §2) -------------------------------------------------------------------


def upload_key(job_id: str, ext: str) -> str:
    return f"uploads/{job_id}/photo.{ext}"


def job_key(job_id: str) -> str:
    return f"jobs/{job_id}/job.json"


def analysis_key(job_id: str) -> str:
    return f"jobs/{job_id}/analysis.json"


def pages_prefix(job_id: str) -> str:
    return f"layout/{job_id}/pages/"


def page_bg_key(job_id: str, num: int) -> str:
    return f"{pages_prefix(job_id)}page_{num:02d}_bg.png"


def page_key(job_id: str, num: int) -> str:
    return f"{pages_prefix(job_id)}page_{num:02d}.png"


def preview_key(job_id: str) -> str:
    return f"layout/{job_id}/preview.pdf"


def book_key(job_id: str) -> str:
    return f"layout/{job_id}/book.pdf"


def log_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/logs/{name}.log"


# ---- the interface ----------------------------------------------------------------------


class StoreError(TransientError):
    """The store could not be reached or answered with an error (transient)."""


def _check_key(key: str) -> str:
    # Split by hand: PurePosixPath folds "a/./b" and "a//b" into "a/b", which S3 keeps apart.
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"unsafe store key {key!r}")
    return key


class Store(ABC):
    """Objects by key. ``version`` is an opaque token for compare-and-swap."""

    uri: str

    @abstractmethod
    def read(self, key: str) -> bytes:
        """The object's bytes; :class:`FileNotFoundError` if there is none."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Replace the object atomically."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; nothing if there is none."""

    @abstractmethod
    def folders(self, prefix: str) -> list[str]:
        """The "folders" right under ``prefix`` (``jobs/`` -> ``jobs/a/``, ``jobs/b/``), sorted."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``, sorted."""

    @abstractmethod
    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        """The object and its version, or None if there is none."""

    @abstractmethod
    def write_if(self, key: str, data: bytes, version: str | None) -> bool:
        """Write only if the object is still at ``version`` (None: only if absent); False if not."""

    def read_text(self, key: str) -> str:
        return self.read(key).decode()             # UTF-8


# ---- a local folder ---------------------------------------------------------------------


class LocalStore(Store):
    """Keys are paths under ``root``. Atomic writes by rename; CAS under an exclusive file lock.

    A write's temporary file lives in ``root/.bookjob-tmp/``, named after the writing process,
    never beside its target; a listing never sees it, and the first write of a later process
    removes those whose writer is dead (killed half-way: no orphan stays).
    """

    TMP = ".bookjob-tmp"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.uri = str(self.root)
        self._swept = False

    def path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def _scratch(self) -> Path:
        scratch = self.root / self.TMP
        scratch.mkdir(exist_ok=True)                # write() has made the root
        if not self._swept:
            self._swept = True
            for orphan in scratch.iterdir():
                writer = orphan.name.partition("-")[0]
                if writer.isdigit() and not _alive(int(writer)):
                    orphan.unlink(missing_ok=True)
        return scratch

    def write(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._scratch(), prefix=f"{os.getpid()}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            faults.point("write")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def folders(self, prefix: str) -> list[str]:
        base = self.root / _check_key(prefix.rstrip("/"))
        if not base.is_dir():
            return []
        return sorted(f"{prefix}{entry.name}/" for entry in os.scandir(base)
                      if entry.is_dir() and not entry.name.startswith("."))

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix.rpartition("/")[0]   # the folder the prefix ends in
        if not base.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix)
                      and not any(part.startswith(".") for part in PurePosixPath(k).parts))

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self.read(key)
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def write_if(self, key: str, data: bytes, version: str | None) -> bool:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f".{target.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read_versioned(key)
            if (current[1] if current else None) != version:
                return False
            self.write(key, data)
            return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- S3 ---------------------------------------------------------------------------------


def _s3_client() -> Any:
    import boto3
    from botocore.config import Config

    # Settings (credentials, region, AWS_ENDPOINT_URL_S3 for MinIO) come from the standard AWS
    # environment and config files; timeouts and 5xx are retried with bounded backoff
    # (botocore's standard mode: up to AWS_MAX_ATTEMPTS tries, default 5, backoff capped at 20 s).
    configured = settings()
    config = Config(
        retries={"mode": "standard",
                 "total_max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or 5)},
        connect_timeout=configured.s3_connect_timeout,
        read_timeout=configured.s3_read_timeout,
    )
    return boto3.client("s3", config=config)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix/``)."""
    rest = uri.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class S3Store(Store):
    """Keys are objects under ``s3://bucket/prefix/``. CAS with conditional writes (If-Match)."""

    list_page_size = 1000   # keys per listing request; S3 answers at most 1,000

    def __init__(self, uri: str, client: Any = None) -> None:
        self.bucket, self.prefix = split_s3_uri(uri)
        if not self.bucket:
            raise ValueError(f"{uri!r} names no bucket; use s3://bucket/prefix")
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.client = client or _s3_client()

    def _key(self, key: str) -> str:
        return self.prefix + _check_key(key)

    def _call(self, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(kwargs.get("Key", "")) from None
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise _Conflict() from None
            raise StoreError(f"S3 {method} {self.uri}: {e}") from e
        except BotoCoreError as e:
            raise StoreError(f"S3 {method} {self.uri}: {e}") from e

    def read(self, key: str) -> bytes:
        data: bytes = self._call("get_object", Key=self._key(key))["Body"].read()
        return data

    def write(self, key: str, data: bytes) -> None:
        self._call("put_object", Key=self._key(key), Body=data, ContentType=content_type(key))

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", Key=self._key(key))
            return True
        except FileNotFoundError:
            return False

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=self._key(key))   # S3: no error for a missing key

    def folders(self, prefix: str) -> list[str]:
        found: list[str] = []
        token: dict[str, str] = {}
        while True:
            page = self._call("list_objects_v2", Prefix=self.prefix + prefix, Delimiter="/",
                              MaxKeys=self.list_page_size, **token)
            found += [p["Prefix"][len(self.prefix):] for p in page.get("CommonPrefixes", [])]
            if not page.get("IsTruncated"):
                return sorted(found)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token: dict[str, str] = {}
        while True:
            page = self._call("list_objects_v2", Prefix=self.prefix + prefix,
                              MaxKeys=self.list_page_size, **token)
            keys += [o["Key"][len(self.prefix):] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            obj = self._call("get_object", Key=self._key(key))
        except FileNotFoundError:
            return None
        return obj["Body"].read(), obj["ETag"]

    def write_if(self, key: str, data: bytes, version: str | None) -> bool:
        condition = {"IfMatch": version} if version else {"IfNoneMatch": "*"}
        try:
            self._call("put_object", Key=self._key(key), Body=data,
                       ContentType=content_type(key), **condition)
            return True
        except (_Conflict, FileNotFoundError):
            return False


class _Conflict(Exception):
    pass


def content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def open_store(uri: str | os.PathLike[str]) -> Store:
    """``s3://bucket/prefix`` or a local folder."""
    text = os.fspath(uri)
    if text.startswith("s3://"):
        return S3Store(text)
    if "://" in text:
        raise ValueError(f"unsupported store {text!r}: use a folder or s3://bucket/prefix")
    return LocalStore(text)


__all__ = [
    "Store", "LocalStore", "S3Store", "StoreError", "open_store", "split_s3_uri", "content_type",
    "upload_key", "job_key", "analysis_key", "pages_prefix", "page_bg_key", "page_key",
    "preview_key", "book_key", "log_key",
]
