"""The status webhook: each status change POSTs the job record to ``BOOKJOB_NOTIFY_URL``.

The body is the job record as JSON. ``X-Bookjob-Timestamp`` is the Unix time of sending and
``X-Bookjob-Signature`` is ``sha256=`` + HMAC-SHA256(secret, ``"{timestamp}.{body}"``) with the
secret from ``BOOKJOB_NOTIFY_SECRET``, so a receiver can check origin and freshness. Delivery
is retried with backoff; a webhook that keeps failing is logged and never fails the job.
"""

from __future__ import annotations

import hashlib
import hmac
import sys
import time
import urllib.error
import urllib.request

from steps.core.settings import settings

ATTEMPTS = 4
TIMEOUT_S = 5.0


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def send(url: str, body: bytes, secret: str = "", attempts: int = ATTEMPTS,
         backoff_s: float = 0.5) -> bool:
    """POST ``body``; True once a 2xx answer came back, False after the last attempt."""
    for attempt in range(attempts):
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Bookjob-Timestamp": timestamp,
                   "User-Agent": "bookjob-webhook/1"}
        if secret:
            headers["X-Bookjob-Signature"] = signature(secret, timestamp, body)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                if 200 <= response.status < 300:
                    return True
        except (urllib.error.URLError, OSError, ValueError) as e:
            error = str(e)
        else:
            error = f"HTTP {response.status}"
        if attempt + 1 < attempts:
            time.sleep(backoff_s * 2 ** attempt)
    print(f"warning: status webhook {url} failed after {attempts} attempts ({error})",
          file=sys.stderr)
    return False


def status_changed(record_json: bytes) -> None:
    """Notify the configured webhook, if any (called after each status change)."""
    configured = settings()
    url = configured.notify_url.strip()
    if url:
        send(url, record_json, configured.notify_secret)
