"""Faults of the store: S3 answering 5xx, timing out, losing an answer, or going away mid-job.

The S3 client is the production one (steps.core.store, botocore standard retry mode) talking real
HTTP to tests/s3_proxy.py, which forwards to the moto server or misbehaves on request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from steps.core.job import JobRecord, Status
from steps.core.records import create_job, read_job, update_job
from steps.core.store import S3Store, StoreError
from tests.doubles.s3_proxy import S3Proxy
from tests.helpers import CHILD_ARGS, DEMO_PHOTO, ROOT


@pytest.fixture
def proxy(s3_endpoint, monkeypatch):
    p = S3Proxy(s3_endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", p.url)
    yield p
    p.stop()


def key_is(fragment: str):
    return lambda method, path: fragment in path


def test_5xx_are_retried(proxy, bucket):
    store = S3Store(f"s3://{bucket}/p")
    proxy.fault("500", times=1, match=key_is("/a.png"))
    proxy.fault("503", times=1, match=key_is("/a.png"))
    store.write("layout/j/a.png", b"png bytes")           # 500, 503, then stored
    proxy.fault("503", times=2, match=key_is("/a.png"))
    assert store.read("layout/j/a.png") == b"png bytes"  # 503, 503, then read
    assert proxy.count("500") == 1 and proxy.count("503") == 3
    assert proxy.count("forward", key_is("/a.png")) == 2


def test_a_timeout_is_retried(proxy, bucket, monkeypatch):
    monkeypatch.setenv("BOOKJOB_S3_READ_TIMEOUT", "1")
    store = S3Store(f"s3://{bucket}/p")
    store.write("layout/j/b.png", b"b")
    proxy.fault("stall", times=1, match=key_is("/b.png"), stall_s=3)
    started = time.monotonic()
    assert store.read("layout/j/b.png") == b"b"
    assert time.monotonic() - started >= 1  # it waited out the read timeout, then retried
    assert proxy.count("stall") == 1 and proxy.count("forward", key_is("/b.png")) == 2


def test_persistent_5xx_is_a_store_error(proxy, bucket, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    store = S3Store(f"s3://{bucket}/p")
    proxy.fault("503", times=float("inf"))
    with pytest.raises(StoreError, match="max retries"):
        store.read("jobs/j/job.json")
    assert proxy.count("503") == 3  # bounded: AWS_MAX_ATTEMPTS tries, then give up


def test_a_lost_answer_to_a_record_update_is_not_applied_twice(proxy, bucket):
    """The conditional PUT lands but its answer is lost; the client's retry then meets the
    record it wrote itself (412). The update must count as done, not be applied again."""
    store = S3Store(f"s3://{bucket}/p")
    create_job(store, JobRecord(job_id="j", book_uri="/b", photo_key="uploads/j/photo.jpg",
                                child_name="Mia", child_age=5, child_gender="girl"))
    proxy.fault("drop", times=1, match=lambda m, p: m == "PUT" and p.endswith("/jobs/j/job.json"))
    update_job(store, "j", lambda r: r.move_to(Status.ANALYZING_COMPLETED))
    assert proxy.count("drop") == 1
    history = [c.status for c in read_job(store, "j").status_history]
    assert history == [Status.ANALYZING, Status.ANALYZING_COMPLETED]


# ---- whole jobs through the CLI ------------------------------------------------------------


@pytest.fixture(scope="module")
def book(small_book):
    return small_book


def bookjob(book, job: str, store: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(book), "--photo", str(DEMO_PHOTO),
         *CHILD_ARGS, "--job-id", job, "--store", store],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "AWS_MAX_ATTEMPTS": "2", **env})


@pytest.mark.slow
def test_a_store_that_keeps_failing_is_reported_as_transient(proxy, bucket, book):
    # the job record's writes fail (the run's lease, jobs/down/lease.json, is taken); the new
    # job's record is written by the run itself, before any step (issue 24)
    proxy.fault("503", times=float("inf"), match=lambda m, p: m == "PUT" and "/jobs/down/job.json" in p)
    done = bookjob(book, "down", f"s3://{bucket}/data", {"AWS_ENDPOINT_URL_S3": proxy.url})
    terminal = done.stdout + done.stderr
    assert done.returncode == 1, terminal  # transient: not 3
    assert "Traceback" not in terminal
    assert "retrying" not in done.stderr   # no step ran: there is no record to work on
    error = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "temporary store failure" in error[0], done.stderr
    assert "run the same command again" in error[0]
    # the record's first write was tried AWS_MAX_ATTEMPTS (2) times
    assert proxy.count("503", key_is("/jobs/down/job.json")) == 2


@pytest.mark.slow
def test_the_store_going_away_mid_job_then_a_rerun_completes(proxy, bucket, book,
                                                            prepay_reference):
    uri = f"s3://{bucket}/data"
    # the endpoint vanishes as the first background page is written
    proxy.fault("die", match=lambda m, p: m == "PUT" and p.endswith("/page_01_bg.png"))
    done = bookjob(book, "gone", uri, {"AWS_ENDPOINT_URL_S3": proxy.url})
    terminal = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in terminal, terminal
    assert "\u2713 prepay/plan" in done.stderr and "\u2717 prepay/backgrounds" in done.stderr
    assert "run the same command again" in done.stderr.splitlines()[-1]
    assert proxy.count("die") == 1 and proxy.count("refused") + proxy.count("die") >= 1

    proxy.start()  # back, on the same address
    again = bookjob(book, "gone", uri, {"AWS_ENDPOINT_URL_S3": proxy.url})
    assert again.returncode == 0, again.stderr
    s3 = S3Store(uri)
    record = json.loads(s3.read("jobs/gone/job.json"))
    assert record["status"] == "prepay_ready"
    pairs = [(a["kind"], a["page"]) for a in record["artifacts"]]
    assert len(pairs) == len(set(pairs)) == 5
    # the same outputs as an uninterrupted run on a local folder
    names = [k[len("layout/gone/"):] for k in s3.list("layout/gone/")]
    assert {n: s3.read(f"layout/gone/{n}") for n in names} == prepay_reference["outputs"]
