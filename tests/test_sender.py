"""Events delivered apart from the work (issue 26): a sender that meets a webhook answering
500 to every other request and gone for a while in the middle, while ten jobs change at once,
delivers every event, in order per job, each signed, any duplicate marked by its idempotency
key; on every records backend. And its rules: backoff, a day's limit, no secret no sending."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.sender import MAX_AGE_S, Sender, check_signed
from steps.core.errors import SetupError
from steps.core.job import Artifact, JobRecord, Status
from steps.core.notify import signature
from steps.core.records import Records, open_records
from steps.core.store import LocalStore
from tests.conftest import RECORDS_BACKENDS, records_database

SECRET = "shh"


class FlakyReceiver:
    """A webhook on loopback: 500 to every other POST when ``flaky``; :meth:`down` closes its
    port (connections refused) until :meth:`up` opens it again."""

    def __init__(self, flaky: bool = True) -> None:
        self.flaky, self.calls, self.received = flaky, 0, []
        self.lock = threading.Lock()
        self.port = 0
        self.up()

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.calls += 1
                    fail = receiver.flaky and receiver.calls % 2 == 0
                    if not fail:
                        receiver.received.append((dict(self.headers), body))
                self.send_response(500 if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@pytest.fixture(params=RECORDS_BACKENDS)
def records(request, tmp_path) -> Records:
    url = records_database(request.param, request, tmp_path)
    return open_records(LocalStore(tmp_path / "store"), url)


def a_job(records: Records, job_id: str) -> None:
    """A job that goes through prepay: statuses and three pages, one change at a time."""
    records.create(JobRecord(job_id=job_id, book_uri="/b", photo_key=f"uploads/{job_id}/p.jpg",
                             child_name="Mia", child_age=5, child_gender="girl"))
    records.update(job_id, lambda r: r.move_to(Status.ANALYZING_COMPLETED))
    records.update(job_id, lambda r: r.move_to(Status.PREPAY_GENERATING))
    for num in (1, 2, 3):
        page = Artifact(kind="page_png", page=num, key=f"layout/{job_id}/pages/page_{num:02d}.png",
                        sha256=str(num) * 64, size=num)
        records.update(job_id, lambda r, page=page: r.add_artifact(page))
    records.update(job_id, lambda r: r.move_to(Status.PREPAY_READY))


def test_every_event_arrives_in_order_signed_through_failures_and_a_webhook_gone(records):
    receiver = FlakyReceiver()
    sender = Sender(records, receiver.url, SECRET, say=lambda line: None)
    import pipeline.sender as module

    first = module.FIRST_BACKOFF_S
    module.FIRST_BACKOFF_S = 0.05           # (the backoff's own rule is tested below)
    thread, stop = sender.start()
    try:
        jobs = [f"job-{n}" for n in range(10)]
        makers = [threading.Thread(target=a_job, args=(records, j)) for j in jobs[:5]]
        for maker in makers:
            maker.start()
        time.sleep(0.3)
        receiver.down()                      # gone in the middle, jobs still changing
        makers += [threading.Thread(target=a_job, args=(records, j)) for j in jobs[5:]]
        for maker in makers[5:]:
            maker.start()
        for maker in makers:
            maker.join()
        time.sleep(1.5)
        receiver.up()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(records.sent(j) < 7 for j in jobs):
            time.sleep(0.1)
    finally:
        stop.set()
        sender.wake()
        thread.join(10)
        receiver.down()
        module.FIRST_BACKOFF_S = first
    assert all(records.sent(j) == 7 for j in jobs)
    got: dict[str, list[int]] = {}
    keys = set()
    for headers, body in receiver.received:
        assert headers["X-Bookjob-Signature"] == signature(SECRET, headers["X-Bookjob-Timestamp"], body)
        event = json.loads(body)
        key = event["idempotency_key"]
        assert key == f"{event['job_id']}:{event['seq']}"
        if key in keys:
            continue                         # a duplicate: the receiver knows it by its key
        keys.add(key)
        got.setdefault(event["job_id"], []).append(event["seq"])
        assert "Mia" not in body.decode()
    assert got == {j: list(range(1, 8)) for j in jobs}   # all, each in order
    assert records.outbox() == []


def test_a_failure_holds_the_job_back_with_backoff_and_the_others_go_on(tmp_path):
    records = open_records(LocalStore(tmp_path / "store"))
    receiver = FlakyReceiver(flaky=False)
    now = [1_000_000.0]
    sender = Sender(records, receiver.url, SECRET, say=lambda line: None, clock=lambda: now[0])
    try:
        a_job(records, "a")
        records.update("a", lambda r: setattr(r, "notify_url", "http://127.0.0.1:9/closed"))
        a_job(records, "b")
        assert not sender.send_all()
        assert records.sent("a") == 0 and records.sent("b") == 7    # b went on
        assert sender.held["a"].failures == 1 and sender.held["a"].until == now[0] + 1
        assert not sender.send_job("a") and sender.held["a"].failures == 1   # not before its time
        now[0] += 1
        assert not sender.send_job("a") and sender.held["a"].until == now[0] + 2   # doubled
        records.update("a", lambda r: setattr(r, "notify_url", ""))   # back to the sender's own
        now[0] += 2
        assert sender.send_job("a") and records.sent("a") == 7 and "a" not in sender.held
    finally:
        receiver.down()


def test_an_event_older_than_a_day_is_given_up_and_said(tmp_path):
    records = open_records(LocalStore(tmp_path / "store"))
    said: list[str] = []
    a_job(records, "old")
    late = time.time() + MAX_AGE_S + 60
    sender = Sender(records, "http://127.0.0.1:9/closed", SECRET, say=said.append,
                    clock=lambda: late)
    assert sender.send_job("old") and records.sent("old") == 7
    assert len(said) == 7 and "was not delivered within 24 h" in said[0]


def test_without_a_secret_nothing_is_sent_unless_allowed(tmp_path):
    records = open_records(LocalStore(tmp_path / "store"))
    receiver = FlakyReceiver(flaky=False)
    try:
        a_job(records, "u")
        assert not Sender(records, receiver.url, "", say=lambda line: None).send_job("u")
        assert receiver.received == [] and records.sent("u") == 0
        assert Sender(records, receiver.url, "", allow_unsigned=True).send_job("u")
        assert len(receiver.received) == 7
        assert all("X-Bookjob-Signature" not in h for h, _ in receiver.received)
    finally:
        receiver.down()
    with pytest.raises(SetupError, match="no BOOKJOB_NOTIFY_SECRET.*--allow-unsigned"):
        check_signed("https://shop.example/hook", "", False)
    check_signed("https://shop.example/hook", "", True)
    check_signed("https://shop.example/hook", "k", False)
    check_signed("", "", False)


def test_redelivery_sends_again_from_an_event_with_the_same_keys(records):
    receiver = FlakyReceiver(flaky=False)
    try:
        a_job(records, "r")
        sender = Sender(records, receiver.url, SECRET)
        assert sender.send_job("r") and len(receiver.received) == 7
        records.resend_from("r", 6)
        assert records.sent("r") == 5 and "r" in records.outbox()
        assert sender.send_all()
        again = [json.loads(b)["idempotency_key"] for _, b in receiver.received[7:]]
        assert again == ["r:6", "r:7"] and records.outbox() == []
    finally:
        receiver.down()
