"""The status webhook: signed POSTs of the job record on each status change, retried, and
never able to fail a job."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from steps.core.notify import send, signature


class Receiver:
    """A webhook receiver on loopback that answers the scripted codes in turn (then 200)."""

    def __init__(self, codes=()):
        self.codes = list(codes)
        self.received: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_signature_is_hmac_sha256_of_timestamp_and_body():
    expected = hmac.new(b"k", b"123.{}", hashlib.sha256).hexdigest()
    assert signature("k", "123", b"{}") == f"sha256={expected}"


def test_send_retries_until_accepted():
    r = Receiver(codes=[500, 503])
    try:
        assert send(r.url, b'{"a": 1}', "k", backoff_s=0.01)
        assert len(r.received) == 3
    finally:
        r.close()


def test_send_gives_up_quietly(capsys):
    r = Receiver(codes=[500] * 10)
    try:
        assert not send(r.url, b"{}", "k", attempts=3, backoff_s=0.01)
        assert len(r.received) == 3
        assert "failed after 3 attempts" in capsys.readouterr().err
    finally:
        r.close()


def _run(book, portrait, store, env):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(book), "--photo", str(portrait),
         "--name", "Mia", "--age", "5", "--job-id", "hook", "--store", str(store), "--json"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **env})


@pytest.mark.slow
def test_each_event_is_posted_signed_in_order_by_the_run_not_its_steps(book, portrait, tmp_path,
                                                                        receiver):
    done = _run(book, portrait, tmp_path / "store",
                {"BOOKJOB_NOTIFY_URL": receiver.url, "BOOKJOB_NOTIFY_SECRET": "shh"})
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    posted = [json.loads(body) for _, body in receiver.received]
    assert [p["seq"] for p in posted] == [e["seq"] for e in record["events"]] == \
        list(range(1, len(record["events"]) + 1))
    assert [p["status"] for p in posted if p["type"] == "status"] == \
        [c["status"] for c in record["status_history"]]
    assert {p["kind"] for p in posted if p["type"] == "artifact"} >= {"page_png", "preview_pdf"}
    for headers, body in receiver.received:
        assert headers["X-Bookjob-Signature"] == signature("shh", headers["X-Bookjob-Timestamp"], body)
        assert b"Mia" not in body
    logs = "".join(p.read_text() for p in (tmp_path / "store" / "jobs" / "hook" / "logs").rglob("*.log"))
    assert "webhook" not in logs          # no step sent, nor waited for, anything


@pytest.mark.slow
def test_a_dead_webhook_never_fails_the_job_and_its_events_wait(book, portrait, tmp_path):
    dead = Receiver(codes=[500] * 1000)
    try:
        done = _run(book, portrait, tmp_path / "store",
                    {"BOOKJOB_NOTIFY_URL": dead.url, "BOOKJOB_NOTIFY_SECRET": "shh"})
    finally:
        dead.close()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "prepay_ready"
    assert "some events of job hook are not delivered yet" in done.stderr
    shown = subprocess.run([sys.executable, "-m", "pipeline.cli", "events", "hook", "--json",
                            "--store", str(tmp_path / "store")], capture_output=True, text=True,
                           env=os.environ.copy())
    assert shown.returncode == 0, shown.stderr
    assert [e["delivered"] for e in json.loads(shown.stdout)] == [False] * len(json.loads(shown.stdout))
    late = Receiver()                      # the webhook back: `bookjob events --send` delivers
    try:
        sent = subprocess.run([sys.executable, "-m", "pipeline.cli", "events", "--send", "--store",
                               str(tmp_path / "store")], capture_output=True, text=True,
                              env={**os.environ, "BOOKJOB_NOTIFY_URL": late.url,
                                   "BOOKJOB_NOTIFY_SECRET": "shh"})
    finally:
        late.close()
    assert sent.returncode == 0, sent.stderr
    assert [json.loads(b)["seq"] for _, b in late.received] == list(
        range(1, len(json.loads(shown.stdout)) + 1))


def test_a_webhook_without_a_secret_is_one_setup_line_and_writes_nothing(book, portrait, tmp_path):
    done = _run(book, portrait, tmp_path / "store", {"BOOKJOB_NOTIFY_URL": "http://127.0.0.1:9/h",
                                                     "BOOKJOB_NOTIFY_SECRET": ""})
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: a webhook is set") and "--allow-unsigned" in line
    assert not (tmp_path / "store" / "jobs" / "hook").exists()
