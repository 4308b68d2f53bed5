"""The webhook's requests, fast: headers and signature, the setting that turns it on, the backoff
between attempts, and what counts as delivered."""

from __future__ import annotations

import time

import pytest

from steps.core import notify
from steps.core.job import Event
from steps.core.notify import body_of, events_added, send, signature
from tests.test_notify import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_a_signed_post_of_the_body(receiver):
    assert send(receiver.url, b'{"status": "analyzing"}', "shh")
    [(headers, body)] = receiver.received
    assert body == b'{"status": "analyzing"}'
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "bookjob-webhook/1"
    assert abs(int(headers["X-Bookjob-Timestamp"]) - time.time()) < 5
    assert headers["X-Bookjob-Signature"] == signature("shh", headers["X-Bookjob-Timestamp"], body)


def test_no_secret_no_signature(receiver):
    assert send(receiver.url, b"{}")
    [(headers, _)] = receiver.received
    assert "X-Bookjob-Signature" not in headers


def test_any_2xx_is_delivered():
    r = Receiver(codes=[204])
    try:
        assert send(r.url, b"{}", attempts=1)
        assert len(r.received) == 1
    finally:
        r.close()


def test_the_backoff_doubles_and_ends_with_the_last_attempt(monkeypatch, capsys):
    waits = []
    monkeypatch.setattr(notify.time, "sleep", waits.append)
    r = Receiver(codes=[500] * 10)
    try:
        assert not send(r.url, b"{}")
    finally:
        r.close()
    assert len(r.received) == notify.ATTEMPTS == 4
    assert waits == [0.5, 1.0, 2.0]
    assert capsys.readouterr().err == (f"warning: status webhook {r.url} failed after 4 attempts "
                                       "(HTTP Error 500: Internal Server Error)\n")


def test_an_unreachable_webhook_is_a_warning(monkeypatch, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    monkeypatch.setattr(notify.time, "sleep", lambda s: None)
    assert not send(url, b"{}", attempts=2)
    err = capsys.readouterr().err
    assert err.startswith(f"warning: status webhook {url} failed after 2 attempts (") and "refused" in err


STATUS = Event(seq=3, type="status", at="2026-12-08T01:00:00Z", status="prepay_ready")
PAGE = Event(seq=2, type="artifact", at="2026-12-08T01:00:00Z", kind="page_png", page=1,
             key="layout/j/pages/page_01.png", sha256="a" * 64)


def test_a_steps_status_events_go_to_the_webhook_its_environment_names(receiver, monkeypatch):
    """(A cluster's steps, until a sender runs there.) Status events only, one POST each."""
    monkeypatch.setenv("BOOKJOB_NOTIFY_URL", f"  {receiver.url}  ")
    monkeypatch.setenv("BOOKJOB_NOTIFY_SECRET", "k")
    monkeypatch.setattr(notify, "_in_step", [False])
    events_added("j", [PAGE, STATUS])
    assert receiver.received == []            # not a step: a sender delivers
    monkeypatch.setattr(notify, "_in_step", [True])
    events_added("j", [PAGE, STATUS])
    [(headers, body)] = receiver.received
    assert body == body_of("j", STATUS)
    assert headers["X-Bookjob-Signature"] == signature("k", headers["X-Bookjob-Timestamp"], body)


def test_an_event_body_has_ids_and_what_changed_and_an_idempotency_key():
    import json

    assert json.loads(body_of("j", PAGE)) == {
        "job_id": "j", "seq": 2, "type": "artifact", "at": "2026-12-08T01:00:00Z",
        "kind": "page_png", "page": 1, "key": "layout/j/pages/page_01.png", "sha256": "a" * 64,
        "idempotency_key": "j:2"}
    assert json.loads(body_of("j", STATUS))["status"] == "prepay_ready"


def test_no_webhook_configured_sends_nothing(receiver, monkeypatch):
    monkeypatch.setattr(notify, "_in_step", [True])
    monkeypatch.delenv("BOOKJOB_NOTIFY_URL", raising=False)
    events_added("j", [STATUS])
    monkeypatch.setenv("BOOKJOB_NOTIFY_URL", "   ")
    events_added("j", [STATUS])
    assert receiver.received == []
