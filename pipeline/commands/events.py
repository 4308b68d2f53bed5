"""``bookjob events``: what a job's shop was told, and sending it (again)."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from pipeline.commands.app import (
    JsonOpt,
    RecordsOpt,
    StoreOpt,
    UnsignedOpt,
    app,
    fail,
    records_at,
    say,
    store_at,
)
from pipeline.sender import Sender, check_signed
from steps.core.job import JobNotFound
from steps.core.settings import settings
from steps.protocol import EXIT_USAGE


@app.command()
def events(
    job_id: Annotated[str | None, typer.Argument(
        help="The job (may be left out with --send: every job with events to deliver).")] = None,
    send: Annotated[bool, typer.Option(
        "--send", help="Deliver the events not delivered yet, now, to each job's webhook (else "
                       "BOOKJOB_NOTIFY_URL).")] = False,
    redeliver_from: Annotated[int | None, typer.Option(
        "--redeliver-from", metavar="SEQ",
        help="Send the job's events again from this one on (same idempotency keys).")] = None,
    allow_unsigned: UnsignedOpt = False,
    store: StoreOpt = None,
    records: RecordsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a job's events (status changes, artifacts stored) and whether each was delivered;
    --send delivers what is pending."""
    if allow_unsigned:
        os.environ["BOOKJOB_ALLOW_UNSIGNED"] = "true"
    held = records_at(store_at(store), records)
    if job_id is None and (not send or redeliver_from is not None):
        fail(EXIT_USAGE, "give the job's id (only --send alone may leave it out)")
    if job_id is not None:
        try:
            held.read(job_id)
        except JobNotFound as e:
            fail(EXIT_USAGE, f"{e}; check the id (bookjob jobs lists them).")
    if redeliver_from is not None:
        held.resend_from(job_id or "", max(1, redeliver_from))
        send = True
    if send:
        configured = settings()
        check_signed(configured.notify_url, configured.notify_secret, configured.allow_unsigned)
        sender = Sender(held, configured.notify_url, configured.notify_secret,
                        configured.allow_unsigned, say=say)
        if not sender.send_all([job_id] if job_id else None):
            say("some events were not delivered; they stay pending (see the warnings above)")
    if job_id is None:
        return
    record, sent = held.read(job_id), held.sent(job_id)
    shown = [{**e.model_dump(mode="json", exclude_none=True), "delivered": e.seq <= sent}
             for e in record.events]
    if as_json:
        typer.echo(json.dumps(shown, indent=2, ensure_ascii=False))
        return
    for e in shown:
        what = e.get("status") or f"{e.get('kind')}" + (f" page {e['page']}" if "page" in e else "")
        typer.echo(f"{e['seq']:>4}  {e['at']}  {e['type']:<8}  {what:<24}  "
                   f"{'delivered' if e['delivered'] else 'pending'}")
