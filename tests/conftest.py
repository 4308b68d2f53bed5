"""Shared fixtures: books, portraits, a real S3 endpoint (moto), the hardening counts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import CHILD_ARGS, DEMO_PHOTO, ROOT, make_book


@pytest.fixture(scope="session")
def demo_photo() -> Path:
    return DEMO_PHOTO


@pytest.fixture(scope="session")
def portrait(tmp_path_factory) -> Path:
    """Another portrait: the demo photo mirrored, cropped off-centre and at another size."""
    image = Image.open(DEMO_PHOTO).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.crop((40, 0, 500, 420)).resize((690, 630), Image.Resampling.LANCZOS)
    path = tmp_path_factory.mktemp("portrait") / "child.png"
    image.save(path)
    return path


@pytest.fixture
def book(tmp_path) -> Path:
    return make_book(tmp_path / "book")


# ---- a real S3 endpoint ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on loopback; the AWS environment points at it for the whole session."""
    port = _free_port()
    try:
        import moto.server  # noqa: F401
    except ImportError:
        pytest.fail("moto[server] is not installed: run `make setup`.")
    proc = subprocess.Popen([sys.executable, "-m", "tests.doubles.s3_server", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto_server did not start")
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                                            "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL_S3=url, AWS_ACCESS_KEY_ID="test",
                      AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    yield url
    proc.terminate()
    proc.wait(10)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def bucket(s3_endpoint) -> str:
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


# ---- job records: the store, SQLite, a real PostgreSQL ----------------------------------


@pytest.fixture(scope="session")
def postgres():
    """One throwaway PostgreSQL server per test process (tests/postgres.py)."""
    from tests.postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


RECORDS_BACKENDS = ("store", "sqlite", "postgresql")


def records_database(kind: str, request, tmp_path: Path) -> str:
    """A records URL of ``kind`` with its schema made: ``store``, a new SQLite file or a new
    database on the test PostgreSQL server (dropped after the test)."""
    if kind == "store":
        return "store"
    from steps.core.migrations import upgrade
    from steps.core.records_sql import SqlRecords

    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'records' / 'bookjob.db'}"
    else:
        server = request.getfixturevalue("postgres")
        url = server.database()

    def finish() -> None:
        opened = SqlRecords._open.pop(url, None)
        if opened is not None:
            opened.engine.dispose()
        if kind == "postgresql":
            server.drop(url)

    request.addfinalizer(finish)
    upgrade(url)
    return url


@pytest.fixture(params=RECORDS_BACKENDS)
def records_url(request, tmp_path, monkeypatch) -> str:
    """The test runs once per records backend; BOOKJOB_RECORDS names it for the test and for
    every process it starts."""
    url = records_database(request.param, request, tmp_path)
    monkeypatch.setenv("BOOKJOB_RECORDS", url)
    return url


# ---- counts the hardening tests report (inputs tried, kills survived, updates kept) ------


@pytest.fixture
def count(record_property):
    """``count("kills_injected")``: add to a total shown at the end of the run (works with -n)."""

    def add(name: str, n: int = 1) -> None:
        record_property(f"count:{name}", n)

    return add


def pytest_terminal_summary(terminalreporter):
    totals: dict[str, int] = {}
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", []):
                if name.startswith("count:") and getattr(report, "when", "") == "call":
                    totals[name[6:]] = totals.get(name[6:], 0) + int(value)
    if totals:
        terminalreporter.write_sep("-", "hardening counts")
        for name, value in sorted(totals.items()):
            terminalreporter.write_line(f"{name.replace('_', ' ')}: {value}")


# ---- one uninterrupted prepay run, to compare crashed and faulted runs with -------------

@pytest.fixture(scope="session")
def small_book(tmp_path_factory) -> Path:
    return make_book(tmp_path_factory.mktemp("small") / "book", size=(600, 400))


@pytest.fixture(scope="session")
def prepay_reference(small_book, tmp_path_factory) -> dict:
    """Job ``ref``: the prepay stage of ``small_book`` for the demo photo and CHILD_ARGS, on a
    local store: its ``root``, ``outputs`` (layout files by name) and ``record``."""
    import json

    root = tmp_path_factory.mktemp("reference") / "store"
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(small_book),
                           "--photo", str(DEMO_PHOTO), *CHILD_ARGS, "--job-id", "ref",
                           "--store", str(root)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    layout = root / "layout" / "ref"
    record = json.loads((root / "jobs/ref/job.json").read_text())
    assert record["status"] == "prepay_ready" and len(record["artifacts"]) == 5
    return {"root": root, "record": record,
            "outputs": {p.relative_to(layout).as_posix(): p.read_bytes()
                        for p in sorted(layout.rglob("*")) if p.is_file() and not p.name.startswith(".")}}
