"""Delivering what the shop is told: each job's events (:mod:`steps.core.notify`) sent to its
webhook apart from the work, from the process that runs the jobs on one machine.

The events are in the job records (the outbox), written with the changes they describe; a
:class:`Sender` reads the jobs whose events are not all settled (:meth:`Records.outbox`), and
POSTs each job's events in order, one at a time, signed. An event is settled once the webhook
answered 2xx (at least once: a crash between the answer and the mark sends it again, with the
same idempotency key), or once it is older than :data:`MAX_AGE_S` (given up, said on stderr).
A failure holds that job back, with backoff doubling from 1 s up to 5 min; other jobs go on.
A job's webhook is its record's ``notify_url``, else the sender's own; without a secret to
sign with, nothing is sent unless the sender allows it unsigned. No step ever waits for it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from steps.core.errors import SetupError, TransientError
from steps.core.job import JobNotFound
from steps.core.notify import body_of, post
from steps.core.records import Records
from steps.core.records_base import parse_time
from steps.core.store import StoreError

MAX_AGE_S = 24 * 3600.0     # an event not delivered within a day is given up
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 300.0


def check_signed(url: str, secret: str, allow_unsigned: bool) -> None:
    """A webhook without a secret to sign with is a setup error, unless asked for."""
    if url.strip() and not secret and not allow_unsigned:
        raise SetupError("a webhook is set (--notify-url / BOOKJOB_NOTIFY_URL) but no "
                         "BOOKJOB_NOTIFY_SECRET to sign its events with; set one, or pass "
                         "--allow-unsigned (BOOKJOB_ALLOW_UNSIGNED=true) to send them unsigned.")


@dataclass
class Held:
    """A job whose delivery failed: tried again at ``until``."""

    until: float
    failures: int
    error: str


class Sender:
    def __init__(self, records: Records, url: str = "", secret: str = "",
                 allow_unsigned: bool = False,
                 say: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
                 clock: Callable[[], float] = time.time) -> None:
        self.records, self.url, self.secret, self.say, self.clock = records, url, secret, say, clock
        self.allow_unsigned = allow_unsigned
        self.held: dict[str, Held] = {}
        self.woken = threading.Event()

    def send_job(self, job_id: str) -> bool:
        """Send the job's events not settled yet, in order; False at the first that fails
        (the job is then held back)."""
        held = self.held.get(job_id)
        if held is not None and self.clock() < held.until:
            return False
        try:
            record = self.records.read(job_id)
        except JobNotFound:
            return True
        events, url = record.events, record.notify_url or self.url
        done = self.records.sent(job_id)
        if done >= len(events) or not url:    # caught up, or nowhere to deliver: settled as
            self.records.mark_sent(job_id, len(events), True)   # it is; its note goes
            return True
        for event in events[done:]:
            last = event.seq == len(events)
            if self.clock() - parse_time(event.at).timestamp() > MAX_AGE_S:
                self.say(f"warning: job {job_id} event {event.seq} was not delivered within "
                         f"{MAX_AGE_S / 3600:g} h ({held.error if held else 'never tried'}); "
                         "given up")
                self.records.mark_sent(job_id, event.seq, last)
                continue
            unsigned = not self.secret and not self.allow_unsigned
            error = "no BOOKJOB_NOTIFY_SECRET to sign with" if unsigned else \
                post(url, body_of(job_id, event), self.secret)
            if error is not None:
                if held is None:
                    self.say(f"warning: job {job_id} event {event.seq} not delivered to {url} "
                             f"({error}); trying again")
                failures = held.failures + 1 if held else 1
                wait = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (failures - 1))
                self.held[job_id] = Held(self.clock() + wait, failures, error)
                return False
            self.held.pop(job_id, None)
            held = None
            self.records.mark_sent(job_id, event.seq, last)
        return True

    def send_all(self, job_ids: Iterable[str] | None = None) -> bool:
        """One round over the outbox (or ``job_ids``); True if nothing is left to send."""
        left = False
        for job_id in list(job_ids) if job_ids is not None else self.records.outbox():
            try:
                left |= not self.send_job(job_id)
            except (TransientError, StoreError) as e:   # the records away: next round
                self.say(f"warning: events of job {job_id} not sent now ({e})")
                left = True
        return not left

    def run(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        """Send until ``stop``; :meth:`wake` makes the next round start at once."""
        while not stop.is_set():
            self.send_all()
            self.woken.wait(poll_s)
            self.woken.clear()

    def wake(self) -> None:
        self.woken.set()

    def start(self) -> tuple[threading.Thread, threading.Event]:
        """:meth:`run` in a daemon thread; set the event it returns to stop it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="sender", daemon=True)
        thread.start()
        return thread, stop

    def flush(self, job_ids: list[str], within_s: float) -> bool:
        """Send the jobs' events, waiting for a webhook that fails for up to ``within_s``;
        True if all were delivered (what is left, a running sender delivers later)."""
        deadline = time.monotonic() + within_s
        while True:
            if self.send_all(job_ids):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
