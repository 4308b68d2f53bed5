"""Many books on one machine (issue 25): BookJobs checks before it queues, `bookjob worker`
takes the queue oldest first, redelivers what a killed worker left (acks_late), hands its work
back on SIGTERM, serves /healthz and /metrics; leases never fail a live run. Real worker
processes, real steps."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.api import BookJobError, BookJobs
from pipeline.lease import EXIT_BUSY, Holder, alive, process_start
from pipeline.worker import enqueue, workers_seen
from steps.core.job import Status
from steps.core.records import open_records
from steps.core.store import LocalStore
from tests.helpers import CHILD_ARGS, DEMO_PHOTO, ROOT, make_book

pytestmark = pytest.mark.slow
NAME, AGE = CHILD_ARGS[1], CHILD_ARGS[3]     # the reference run's child (Олена, 5, girl)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WorkerProcess:
    """`bookjob worker` in a process group of its own (killed as a machine would be)."""

    def __init__(self, store: Path, *args: str) -> None:
        self.log = store.parent / f"worker-{time.monotonic_ns()}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "worker", "--store", str(store), *args],
                stdout=out, stderr=subprocess.STDOUT, env=env(), cwd=ROOT, start_new_session=True)

    def kill(self, group: bool = True) -> None:
        if group:
            os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.kill()
        self.process.wait(30)

    def stop(self, timeout: float = 120) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def text(self) -> str:
        return self.log.read_text()


@pytest.fixture
def small(tmp_path) -> Path:
    return make_book(tmp_path / "book", size=(600, 400))


def order(jobs: BookJobs, book: Path, job_id: str, **child):
    fields = {"name": NAME, "age": AGE, "gender": "girl", **child}
    return jobs.generate(job_id, "prepay", book=str(book), photo=str(DEMO_PHOTO), **fields)


# ---- refused before the call returns --------------------------------------------------------

def test_bookjobs_refuses_before_it_returns_and_queues_nothing(small, tmp_path):
    store = tmp_path / "store"
    jobs = BookJobs(str(store))
    not_a_photo = tmp_path / "kid.jpg"
    not_a_photo.write_bytes(b"<html>not a photo</html>")
    no_book = tmp_path / "nobook"
    no_book.mkdir()
    cases = {"bad-photo": ({"photo": str(not_a_photo)}, 3, "bad_image"),
             "bad-age": ({"age": 42}, 3, "bad_age"),
             "bad-book": ({"book": str(no_book)}, 3, "bad_manifest"),
             "bad-language": ({"language": "fr"}, 3, "bad_language")}
    for job_id, (given, code, reason) in cases.items():
        fields = {"book": str(small), "photo": str(DEMO_PHOTO), "name": NAME, "age": AGE,
                  **given}
        with pytest.raises(BookJobError) as refused:
            jobs.generate(job_id, "prepay", **fields)
        assert refused.value.code == code, refused.value.message
        assert refused.value.message.endswith(".") and "\n" not in refused.value.message
        record = jobs.records.read(job_id)
        assert record.status is Status.ANALYSIS_FAILED and record.error.reason == reason
        assert record.queued is None
    submitted = order(jobs, small, "fine")
    assert submitted.ahead == 0 and "no bookjob worker has been seen" in submitted.note
    with pytest.raises(BookJobError) as busy:
        jobs.generate("fine", "prepay")
    assert busy.value.code == EXIT_BUSY and "already has its prepay stage queued" in busy.value.message
    assert [j for _, j in jobs.records.queue()] == ["fine"]
    # nothing a user gives is dropped: a dedication the job was made without is refused
    with pytest.raises(BookJobError) as other:
        jobs.generate("bad-age", "prepay", dedication="For you")
    assert other.value.code == 2 and "dedication none, not 'For you'" in other.value.message
    assert jobs.records.read("bad-age").dedication == ""


def test_status_says_queued_and_how_many_are_ahead(small, tmp_path):
    store = tmp_path / "store"
    jobs = BookJobs(str(store))
    for n in range(3):
        order(jobs, small, f"q{n}")
    assert [jobs.status(f"q{n}").queued["ahead"] for n in range(3)] == [0, 1, 2]
    assert jobs.status("q1").status == "analyzing"          # the old status until a worker starts
    shown = subprocess.run([sys.executable, "-m", "pipeline.cli", "status", "q2", "--store",
                            str(store)], capture_output=True, text=True, env=env(), cwd=ROOT)
    assert shown.returncode == 0 and "queued: prepay, 2 ahead" in shown.stdout
    with pytest.raises(TimeoutError, match="queued, 2 ahead"):
        jobs.wait("q2", timeout=0.5, poll_s=0.1)

    worker = WorkerProcess(store, "--slots", "1", "--port", "0")
    try:
        finished = [jobs.wait(f"q{n}", timeout=300) for n in range(3)]
    finally:
        assert worker.stop() == 0, worker.text()
    assert [s.status for s in finished] == ["prepay_ready"] * 3
    assert all(s.queued is None for s in finished)
    starts = [line for line in worker.text().splitlines() if "delivery 1 of 3" in line]
    assert [line.split()[1] for line in starts] == ["q0", "q1", "q2"]   # oldest first
    assert "RuntimeWarning" not in worker.text()
    assert workers_seen(LocalStore(store)) == []           # a stopped worker is not seen


# ---- redelivery ------------------------------------------------------------------------------

def layout(store: Path, job: str) -> dict[str, bytes]:
    root = store / "layout" / job
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_a_worker_killed_three_times_loses_no_order(small_book, prepay_reference, tmp_path,
                                                    count):
    """20 orders; the worker is SIGKILLed (twice with its whole process group, as a machine
    dies; once alone, its steps orphaned) and started again each time: every order
    completes, every page byte-identical to the same order run alone."""
    store = tmp_path / "store"
    jobs = BookJobs(str(store))
    ids = [f"order-{n:02d}" for n in range(20)]
    for job_id in ids:
        order(jobs, small_book, job_id)
    done_before = 0
    for moment, group in ((2, True), (7, False), (12, True)):
        worker = WorkerProcess(store, "--slots", "2", "--port", "0")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            ready = sum(jobs.records.read(j).status is Status.PREPAY_READY for j in ids)
            if ready >= moment:
                break
            time.sleep(0.2)
        worker.kill(group=group)
        count("kills_injected")
        assert ready >= done_before
        done_before = ready
    worker = WorkerProcess(store, "--slots", "2", "--port", "0")
    try:
        finished = {j: jobs.wait(j, timeout=600) for j in ids}
    finally:
        assert worker.stop() == 0, worker.text()
    assert {s.status for s in finished.values()} == {"prepay_ready"}, finished
    for job_id in ids:
        assert layout(store, job_id) == prepay_reference["outputs"], job_id
        record = jobs.records.read(job_id)
        assert len(record.artifacts) == 5 and record.queued is None and record.error is None
    count("kills_survived", 3)


def alone(book: Path, job_id: str, store: Path, name: str) -> dict[str, bytes]:
    """The same order run by itself with `bookjob run`: its layout folder."""
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(book), "--photo",
                           str(DEMO_PHOTO), "--name", name, "--age", AGE, "--gender", "girl",
                           "--job-id", job_id, "--store", str(store), "--stage", "prepay"],
                          capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    return layout(store, job_id)


def test_a_slot_keeps_its_render_step_and_browser_from_one_job_to_the_next(small, tmp_path):
    """One slot, three orders, two books with different font files, two names: one render
    process (its browser up) sets all three jobs' text, and each job's pages are the bytes of
    the same order run alone: nothing of a job before is carried into the next."""
    other = make_book(tmp_path / "other", size=(600, 400))
    bold = ROOT / "pipeline" / "demo" / "book" / "fonts" / "Andika-Bold.ttf"
    (other / "fonts" / "Andika-Regular.ttf").write_bytes(bold.read_bytes())
    store = tmp_path / "store"
    jobs = BookJobs(str(store))
    orders = [("k1", small, NAME), ("k2", other, "Max"), ("k3", small, "Max")]
    for job_id, book, name in orders:
        order(jobs, book, job_id, name=name)
    worker = WorkerProcess(store, "--slots", "1", "--port", "0")
    try:
        assert {jobs.wait(j, timeout=300).status for j, _, _ in orders} == {"prepay_ready"}
    finally:
        assert worker.stop() == 0, worker.text()
    logs = [next((store / "jobs" / j / "logs").glob("*/prepay-render-*")).read_text()
            for j, _, _ in orders]
    pid = re.search(r"render: staying for the next run \(process (\d+)\)", logs[0])
    assert pid, logs[0]
    for log in logs[1:]:
        assert log.startswith(f"render: the process of the run before, warm (process {pid[1]})"), log
    for job_id, book, name in orders[1:]:
        assert layout(store, job_id) == alone(book, f"{job_id}-alone", tmp_path / "alone", name), \
            job_id


def test_the_worker_delivers_each_jobs_events_to_the_jobs_own_webhook(small, tmp_path,
                                                                     monkeypatch):
    from steps.core.notify import signature
    from tests.test_sender import FlakyReceiver

    receiver = FlakyReceiver()            # 500 to every other POST
    monkeypatch.setenv("BOOKJOB_NOTIFY_SECRET", "shh")
    store = tmp_path / "store"
    jobs = BookJobs(str(store))
    order(jobs, small, "w1", notify_url=receiver.url)
    worker = WorkerProcess(store, "--slots", "1", "--port", "0")
    try:
        assert jobs.wait("w1", timeout=300).status == "prepay_ready"
        events = jobs.records.read("w1").events
        deadline = time.monotonic() + 60
        while jobs.records.sent("w1") < len(events) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        assert worker.stop() == 0, worker.text()
        receiver.down()
    assert jobs.records.sent("w1") == len(events) and len(events) >= 8
    seen: list[int] = []
    for headers, body in receiver.received:
        assert headers["X-Bookjob-Signature"] == signature("shh", headers["X-Bookjob-Timestamp"], body)
        seq = json.loads(body)["seq"]
        if seq not in seen:
            seen.append(seq)
    assert seen == [e.seq for e in events]


def test_sigterm_hands_running_work_back(small, tmp_path):
    store = tmp_path / "store"
    jobs = BookJobs(str(store))
    order(jobs, small, "slow")
    worker = WorkerProcess(store, "--slots", "1", "--port", "0", "--grace", "0")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (jobs.records.read("slow").queued.attempts == 1):
        time.sleep(0.05)
    time.sleep(0.5)                                          # into its first steps
    assert worker.stop() == 0, worker.text()
    assert "handing slow prepay back" in worker.text() or "slow prepay: completed" in worker.text()
    record = jobs.records.read("slow")
    if record.queued is not None:                           # handed back: not counted, not failed
        assert record.queued.attempts == 0 and record.status is not Status.GENERATION_FAILED
        again = WorkerProcess(store, "--slots", "1", "--port", "0")
        try:
            assert jobs.wait("slow", timeout=300).status == "prepay_ready"
        finally:
            again.stop()


def test_a_request_delivered_too_often_fails_its_job(small, tmp_path):
    store = tmp_path / "store"
    jobs = BookJobs(str(store))
    order(jobs, small, "cursed")

    def died_three_times(record) -> None:
        record.queued.attempts = record.queued.max_attempts

    jobs.records.update("cursed", died_three_times)
    worker = WorkerProcess(store, "--slots", "1", "--port", "0")
    try:
        state = jobs.wait("cursed", timeout=60)
    finally:
        worker.stop()
    assert state.status == "analysis_failed" and state.error["reason"] == "attempts_exhausted"
    assert "started 3 times" in state.error["message"] and state.queued is None


# ---- health and metrics ------------------------------------------------------------------

def test_healthz_and_metrics(small, tmp_path):
    store = tmp_path / "store"
    port = free_port()
    worker = WorkerProcess(store, "--slots", "1", "--port", str(port))
    try:
        for _ in range(100):
            try:
                health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        assert health.status == 200 and health.read() == b"ok\n"
        jobs = BookJobs(str(store))
        assert workers_seen(LocalStore(store))                 # said it is alive
        assert order(jobs, small, "m1").note == ""
        assert jobs.wait("m1", timeout=300).status == "prepay_ready"
        counted = ('bookjob_worker_stage_duration_seconds_count{outcome="completed",stage="prepay"} '
                   '1.0')
        for _ in range(300):   # the job's status is final a moment before its run has ended
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            if counted in metrics:
                break
            time.sleep(0.1)
        assert counted in metrics
        assert "bookjob_worker_queue_depth 0.0" in metrics
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nope")
    finally:
        assert worker.stop() == 0


# ---- leases that never fail a live run ---------------------------------------------------

def test_a_live_process_holds_its_lease_whatever_its_heartbeat():
    me = os.getpid()
    assert alive(me, process_start(me)) and not alive(me, process_start(me) + 1)
    stale = Holder("r", socket.gethostname(), me, "prepay", 0.0, 0.0, pid_start=process_start(me))
    assert not stale.dead(lease_s=1)                         # an hour late, alive: held
    reused = Holder("r", socket.gethostname(), me, "prepay", 0.0, 0.0,
                    pid_start=process_start(me) + 1)
    assert reused.dead(lease_s=1)                            # another process has that pid now
    elsewhere = Holder("r", "elsewhere", me, "prepay", 0.0, 0.0)
    assert elsewhere.dead(lease_s=1)                         # another host: the heartbeat
    assert not Holder("r", "elsewhere", me, "prepay", 0.0, time.time()).dead(lease_s=60)
    zombie = subprocess.Popen(["true"])
    time.sleep(0.3)                                          # exited, not yet reaped
    assert not alive(zombie.pid)
    zombie.wait()


def test_a_run_stopped_past_its_lease_stays_generating_and_completes(small, tmp_path):
    store = tmp_path / "store"
    run = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(small), "--photo",
                            str(DEMO_PHOTO), "--name", "Mia", "--age", "5", "--job-id", "stopped",
                            "--store", str(store)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**env(), "BOOKJOB_LEASE_S": "3"},
                           cwd=ROOT, start_new_session=True)
    records = open_records(LocalStore(store))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if records.exists("stopped") and records.read("stopped").status is Status.PREPAY_GENERATING:
            break
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGSTOP)
    time.sleep(4.5)
    status = subprocess.run([sys.executable, "-m", "pipeline.cli", "status", "stopped",
                             "--store", str(store), "--json"], capture_output=True, text=True,
                            env={**env(), "BOOKJOB_LEASE_S": "3"}, cwd=ROOT)
    os.killpg(run.pid, signal.SIGCONT)
    assert json.loads(status.stdout)["status"] == "prepay_generating", status.stdout
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert records.read("stopped").status is Status.PREPAY_READY


def test_a_run_found_interrupted_while_alive_is_put_back_and_finishes(small, tmp_path):
    """From another host only a late heartbeat is seen: the job may be marked interrupted
    while its run lives. The run puts it back and finishes (finalize), never crashes."""
    store = tmp_path / "store"
    common = ["--job-id", "late", "--store", str(store)]
    first = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(small), "--photo",
                            str(DEMO_PHOTO), "--name", "Mia", "--age", "5", *common],
                           capture_output=True, text=True, env=env(), cwd=ROOT)
    assert first.returncode == 0, first.stderr
    records = open_records(LocalStore(store))
    records.update("late", lambda r: r.move_to(Status.PREPAY_GENERATING))   # a regeneration
    records.mark_failed("late", "run", "interrupted", "The run on host b was silent.")
    finalize = subprocess.run([sys.executable, "-m", "steps.finalize", "--store", str(store),
                               "--job-id", "late", "--book", str(small), "--stage", "prepay"],
                              capture_output=True, text=True, env=env(), cwd=ROOT)
    assert finalize.returncode == 0, finalize.stderr
    record = records.read("late")
    assert record.status is Status.PREPAY_READY and record.error is None
    assert [c.status for c in record.status_history][-3:] == [
        Status.GENERATION_FAILED, Status.PREPAY_GENERATING, Status.PREPAY_READY]


def test_enqueue_keeps_one_request_per_job(tmp_path):
    from pipeline.worker import AlreadyQueued
    from tests.test_records import record

    records = open_records(LocalStore(tmp_path), "store")
    records.create(record("j1"))
    enqueue(records, {"job_id": "j1"}, "prepay")
    with pytest.raises(AlreadyQueued):
        enqueue(records, {"job_id": "j1"}, "postpay")
    assert records.read("j1").queued.stage == "prepay"
    assert [j for _, j in records.queue()] == ["j1"]


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", "worker", "--store",
                               str(tmp_path / "store"), "--port", str(port)],
                              capture_output=True, text=True, env=env(), cwd=ROOT, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "another --port" in done.stderr
