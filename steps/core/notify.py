"""The webhook: each event of a job (:class:`~steps.core.job.Event`) POSTed to the shop.

The body is one JSON object: ``job_id``, ``seq`` (the job's event number, from 1, no gaps),
``type`` (``status`` or ``artifact``), ``at``, ``status`` or the artifact's ``kind``, ``page``,
``key`` and ``sha256``, and ``idempotency_key`` (``{job_id}:{seq}``: the same event sent again
carries the same one). Never the child's details: the shop has them in its own order.
``X-Bookjob-Timestamp`` is the Unix time of sending and ``X-Bookjob-Signature`` is ``sha256=`` +
HMAC-SHA256(secret, ``"{timestamp}.{body}"``) with the secret from ``BOOKJOB_NOTIFY_SECRET``,
so a receiver can check origin and freshness (as Stripe's and GitHub's webhooks do).

On one machine :mod:`pipeline.sender` delivers events apart from the steps. A step whose
environment names a webhook (``BOOKJOB_NOTIFY_URL``: a cluster's steps, until a sender runs
there) posts its status events itself, retried with backoff; a webhook that keeps failing is
logged and never fails the job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from steps.core.job import Event
from steps.core.settings import settings

ATTEMPTS = 4
TIMEOUT_S = 5.0
_in_step = [False]   # set by the step runner: only a step process posts its own events


def as_step() -> None:
    """Mark this process as a step (:func:`steps.runner.run`): it posts its status events where
    its environment names a webhook. Any other process (the CLI, a worker, BookJobs) leaves
    delivery to a sender (:mod:`pipeline.sender`)."""
    _in_step[0] = True


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def body_of(job_id: str, event: Event) -> bytes:
    """The event as the webhook receives it."""
    fields = {"job_id": job_id, **{k: v for k, v in event.model_dump(mode="json").items()
                                   if v is not None}, "idempotency_key": f"{job_id}:{event.seq}"}
    return json.dumps(fields, ensure_ascii=False, sort_keys=True).encode()


def post(url: str, body: bytes, secret: str = "", timeout_s: float = TIMEOUT_S) -> str | None:
    """POST ``body`` once, signed; None if a 2xx answer came back, else what went wrong."""
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Bookjob-Timestamp": timestamp,
               "User-Agent": "bookjob-webhook/1"}
    if secret:
        headers["X-Bookjob-Signature"] = signature(secret, timestamp, body)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return str(e)


def send(url: str, body: bytes, secret: str = "", attempts: int = ATTEMPTS,
         backoff_s: float = 0.5) -> bool:
    """POST ``body``; True once a 2xx answer came back, False after the last attempt."""
    error = None
    for attempt in range(attempts):
        error = post(url, body, secret)
        if error is None:
            return True
        if attempt + 1 < attempts:
            time.sleep(backoff_s * 2 ** attempt)
    print(f"warning: status webhook {url} failed after {attempts} attempts ({error})",
          file=sys.stderr)
    return False


def events_added(job_id: str, events: Sequence[Event]) -> None:
    """A record change added ``events``: posted here, status events only, by a step whose
    environment names a webhook (see the module's docstring); by no other process."""
    if not _in_step[0]:
        return
    configured = settings()
    url = configured.notify_url.strip()
    if url:
        for event in events:
            if event.type == "status":
                send(url, body_of(job_id, event), configured.notify_secret)
