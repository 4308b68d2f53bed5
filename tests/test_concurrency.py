"""One job, one run at a time (issue 13): the lease, runs started together, a killed run that
`bookjob status` reconciles, no orphan temporary files, each run's own logs; and the sources
a job may read over plain http:// (a local http.server on loopback). On every job-records
backend (the store, SQLite, a real PostgreSQL): the lease lives in the records."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from pipeline.lease import EXIT_BUSY, Busy, Holder, Lease, holder
from steps.core import sources
from steps.core.errors import InputError
from steps.core.records import job_exists, open_records, read_job
from steps.core.store import LocalStore
from tests.helpers import DEMO_PHOTO, ROOT, make_book

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("records_url")]


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *args]


def env_now() -> dict[str, str]:
    """The environment as the test has set it (BOOKJOB_RECORDS among it)."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def start(*args: str, env=None) -> subprocess.Popen:
    return subprocess.Popen(cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**env_now(), **(env or {})}, cwd=ROOT, start_new_session=True)


def new_job_args(book: Path, store: Path, job: str, stage: str = "full") -> list[str]:
    return ["run", str(book), "--photo", str(DEMO_PHOTO), "--name", "Mia", "--age", "5",
            "--job-id", job, "--store", str(store), "--stage", stage]


def layout(store: Path, job: str) -> dict[str, str]:
    root = store / "layout" / job
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def small(tmp_path) -> Path:
    return make_book(tmp_path / "book", size=(600, 400))


# ---- the lease ----------------------------------------------------------------------------


def job(store: Path, job_id: str) -> dict:
    """The job's record as JSON, from whichever records backend the test runs on."""
    return read_job(LocalStore(store), job_id).model_dump(mode="json")


def put_lease(records, job_id: str, holder_: Holder) -> None:
    assert records.write_lease_if(job_id, json.dumps(holder_.__dict__).encode(),
                                  records.read_lease(job_id)[1])


def test_the_lease_is_held_by_one_run_and_freed_by_release_death_or_silence(tmp_path):
    store = open_records(LocalStore(tmp_path))
    first = Lease(store, "j", "full")
    first.acquire()
    with pytest.raises(Busy, match="being run by run"):
        Lease(store, "j", "full").try_acquire()
    first.release()
    second = Lease(store, "j", "prepay")
    second.acquire()        # released: free
    second._stop.set()      # the holder dies without releasing ...
    dead = Holder(**{**json.loads(store.read_lease("j")[0]), "pid": 2 ** 22 + 17})
    put_lease(store, "j", dead)
    Lease(store, "j", "full").try_acquire()    # ... a dead process on this host: free
    silent = Holder(**{**json.loads(store.read_lease("j")[0]), "host": "elsewhere",
                       "heartbeat": time.time() - 3600})
    put_lease(store, "j", silent)
    Lease(store, "j", "full").try_acquire()    # silent for longer than a lease: free
    alive = Holder(**{**json.loads(store.read_lease("j")[0]), "host": "elsewhere",
                      "run_id": "other"})
    put_lease(store, "j", alive)
    with pytest.raises(Busy):                  # another host, heartbeat fresh: held
        Lease(store, "j", "full").try_acquire()


def test_two_runs_of_one_job_started_together(small, tmp_path):
    store = tmp_path / "store"
    args = new_job_args(small, store, "twin")
    a = start(*args)
    time.sleep(0.3)
    b = start(*args)
    (_, a_err), (_, b_err) = a.communicate(timeout=600), b.communicate(timeout=600)
    codes = sorted([a.returncode, b.returncode])
    assert codes == [0, EXIT_BUSY], a_err + b_err
    refused = b_err if b.returncode == EXIT_BUSY else a_err
    lines = [line for line in refused.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "being run by run" in lines[0]
    record = job(store, "twin")
    assert record["status"] == "completed" and record["error"] is None
    # one run, its own logs
    assert [p.name for p in (store / "jobs/twin/logs").iterdir()] == [
        holder(open_records(LocalStore(store)), "twin").run_id]

    # the second run, told to wait, runs after the first and changes no page
    before = layout(store, "twin")
    a = start(*args)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:   # a holds the job
        now = holder(open_records(LocalStore(store)), "twin")
        if now is not None and now.pid == a.pid and not now.released:
            break
        time.sleep(0.05)
    b = start(*args, "--wait-for-lease", "300")
    (_, a_err), (_, b_err) = a.communicate(timeout=600), b.communicate(timeout=600)
    assert a.returncode == 0 and b.returncode == 0, a_err + b_err
    assert "waiting for it" in b_err
    assert layout(store, "twin") == before
    assert len(list((store / "jobs/twin/logs").iterdir())) == 3
    # identical to a single run of the job
    solo = tmp_path / "solo"
    # (records of its own: the pages are the same whichever backend holds the record)
    done = subprocess.run(cli(*new_job_args(small, solo, "twin")),
                          env={**env_now(), "BOOKJOB_RECORDS": "store"}, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert layout(solo, "twin") == before


def test_a_killed_run_is_reconciled_by_status_and_leaves_no_temporary_file(small, tmp_path):
    store = tmp_path / "store"
    args = new_job_args(small, store, "killed", stage="prepay")
    # the whole run dies (machine-like) while render writes page 1: its temp file is complete
    killed = start(*args, env={"BOOKJOB_KILL": "render:write:1", "BOOKJOB_KILL_SCOPE": "group"})
    killed.wait(600)
    assert killed.returncode == -signal.SIGKILL
    orphans = list((store / LocalStore.TMP).iterdir())
    assert orphans, "the kill was meant to leave a temporary file behind"
    assert LocalStore(store).list("") == sorted(LocalStore(store).list(""))
    assert not any(LocalStore.TMP in key or key.endswith(".tmp") for key in LocalStore(store).list(""))
    assert job(store, "killed")["status"] == "prepay_generating"

    status = subprocess.run(cli("status", "killed", "--store", str(store), "--json"), env=env_now(),
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    record = json.loads(status.stdout)
    assert record["status"] == "generation_failed"
    assert record["error"]["reason"] == "interrupted" and "was killed" in record["error"]["message"]

    done = subprocess.run(cli(*args[:1], "--job-id", "killed", "--store", str(store)), env=env_now(),
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert list((store / LocalStore.TMP).iterdir()) == []
    hidden = [p for p in store.rglob("*.tmp")]
    assert hidden == []
    finished = job(store, "killed")
    assert finished["status"] == "prepay_ready"
    # a finished run is never reconciled into a failure
    status = subprocess.run(cli("status", "killed", "--store", str(store), "--json"), env=env_now(),
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert json.loads(status.stdout)["status"] == "prepay_ready"


# ---- plain http:// sources ---------------------------------------------------------------


@pytest.fixture
def http_server(tmp_path):
    """A loopback http.server over ``tmp_path/www``: (folder, host:port)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield www, f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_sources_only_from_allowed_hosts(small, tmp_path, http_server, monkeypatch):
    www, where = http_server
    (www / "p2.png").write_bytes((small / "pages/p2.png").read_bytes())
    (www / "photo.jpg").write_bytes(DEMO_PHOTO.read_bytes())
    data = yaml.safe_load((small / "book.yaml").read_text())
    data["pages"][1]["base"] = f"http://{where}/p2.png"
    (small / "book.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    store = tmp_path / "store"
    args = ["run", str(small), "--photo", f"http://{where}/photo.jpg", "--name", "Mia", "--age",
            "5", "--job-id", "web", "--store", str(store), "--json"]

    refused = subprocess.run(cli(*args), env={**env_now(), "BOOKJOB_ALLOW_HTTP_HOSTS": ""}, cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode == 3 and "BOOKJOB_ALLOW_HTTP_HOSTS" in refused.stderr
    assert not job_exists(LocalStore(store), "web")   # no job, only a released lease
    other_port = subprocess.run(cli(*args), env={**env_now(), "BOOKJOB_ALLOW_HTTP_HOSTS": "127.0.0.1"},
                                cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert other_port.returncode == 3  # an entry without a port means port 80 only

    done = subprocess.run(cli(*args), env={**env_now(), "BOOKJOB_ALLOW_HTTP_HOSTS": f"x.test, {where}"},
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "prepay_ready"
    assert record["photo_source"] == f"http://{where}/photo.jpg"
    assert (store / record["photo_key"]).read_bytes() == DEMO_PHOTO.read_bytes()

    # the same size limit as https://
    monkeypatch.setenv("BOOKJOB_ALLOW_HTTP_HOSTS", where)
    monkeypatch.setattr(sources, "MAX_DOWNLOAD", 100)
    with pytest.raises(InputError) as big:
        sources.download(f"http://{where}/photo.jpg", "The photo")
    assert big.value.reason == "image_too_large"
    monkeypatch.setenv("BOOKJOB_ALLOW_HTTP_HOSTS", "")
    with pytest.raises(InputError) as refused_unit:
        sources.download(f"http://{where}/photo.jpg", "The photo")
    assert refused_unit.value.reason == "http_not_allowed"


def test_a_photo_from_s3_is_copied_with_its_provenance(small, bucket, tmp_path):
    import boto3

    boto3.client("s3").put_object(Bucket=bucket, Key="incoming/mia.jpg", Body=DEMO_PHOTO.read_bytes())
    store = tmp_path / "store"
    done = subprocess.run(cli("run", str(small), "--photo", f"s3://{bucket}/incoming/mia.jpg",
                              "--name", "Mia", "--age", "5", "--job-id", "s3p", "--store",
                              str(store), "--stage", "analyze", "--json"),
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["photo_source"] == f"s3://{bucket}/incoming/mia.jpg"
    assert record["photo_key"].startswith("uploads/s3p/")
    assert (store / record["photo_key"]).read_bytes() == DEMO_PHOTO.read_bytes()
    missing = subprocess.run(cli("run", str(small), "--photo", f"s3://{bucket}/incoming/nope.jpg",
                                 "--name", "Mia", "--age", "5", "--job-id", "s3q", "--store",
                                 str(store), "--stage", "analyze"),
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert missing.returncode == 3 and "no photo at" in missing.stderr
