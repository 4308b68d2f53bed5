"""``bookjob worker``: run queued stages on this machine (:mod:`pipeline.worker`), with
``/healthz`` and Prometheus ``/metrics`` on a local port."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated

import typer

from pipeline.commands.app import (
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
from steps.core.settings import settings
from steps.protocol import EXIT_USAGE


class Metrics:
    """The worker's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.queue = Gauge("bookjob_worker_queue_depth", "Stages queued and not yet running",
                           registry=self.registry)
        self.running = Gauge("bookjob_worker_running", "Stages running on this worker",
                             registry=self.registry)
        self.duration = Histogram(
            "bookjob_worker_stage_duration_seconds", "Time a stage ran on this worker",
            ["stage", "outcome"], registry=self.registry,
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800))
        self.failures = Counter("bookjob_worker_stage_failures_total",
                                "Stages that ended without success", ["stage", "reason"],
                                registry=self.registry)

    def gauges(self, depth: int, running: int) -> None:
        self.queue.set(depth)
        self.running.set(running)

    def finished(self, stage: str, outcome: str, reason: str, seconds: float | None) -> None:
        if seconds is not None:
            self.duration.labels(stage, outcome).observe(seconds)
        if outcome != "completed":
            self.failures.labels(stage, reason or "unknown").inc()

    def serve(self, port: int, healthy) -> ThreadingHTTPServer:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        registry = self.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/metrics":
                    body, kind, code = generate_latest(registry), CONTENT_TYPE_LATEST, 200
                elif self.path == "/healthz":
                    ok = healthy()
                    body, kind, code = (b"ok\n" if ok else b"stopping\n"), "text/plain", \
                        200 if ok else 503
                else:
                    body, kind, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@app.command()
def worker(
    slots: Annotated[int | None, typer.Option(
        "--slots", help="Stages run at once (default: one per core, at most one per 1.5 GiB "
                        "of memory).")] = None,
    port: Annotated[int, typer.Option(
        "--port", help="Local port of /healthz and /metrics (0: none).")] = 9464,
    grace: Annotated[float, typer.Option(
        "--grace", help="On SIGTERM, seconds running stages may take to finish before they "
                        "are handed back.")] = 60.0,
    store: StoreOpt = None,
    records: RecordsOpt = None,
    allow_unsigned: UnsignedOpt = False,
) -> None:
    """Run the stages queued in the job records (by BookJobs), a few at a time, until SIGTERM.

    A dead worker's stage is taken again once its lease is free, and resumes where it stopped.
    """
    from pipeline.launch import start_early
    from pipeline.worker import Worker, default_slots

    target = store_at(store)
    held = records_at(target, records)
    chosen = slots if slots is not None else default_slots()
    if chosen < 1:
        fail(EXIT_USAGE, f"--slots must be at least 1, not {chosen}")
    start_early(s3=target.uri.startswith("s3://"), sql=held.uri != "store")
    configured = settings()
    check_signed(configured.notify_url, configured.notify_secret,
                 allow_unsigned or configured.allow_unsigned)
    sender = Sender(held, configured.notify_url, configured.notify_secret,
                    allow_unsigned or configured.allow_unsigned, say=say)
    metrics = Metrics()
    runner = Worker(target, held, chosen, grace_s=grace, say=say, metrics=metrics, sender=sender)
    runner.install_signals()
    try:
        server = metrics.serve(port, lambda: not runner.stopping.is_set()) if port else None
    except OSError as e:
        fail(EXIT_USAGE, f"cannot listen on 127.0.0.1:{port} ({e.strerror}); pass another --port "
                         "(0: no /healthz or /metrics)")
    where = f"; /healthz and /metrics on 127.0.0.1:{server.server_address[1]}" if server else ""
    say(f"worker {runner.name}: {chosen} slot{'s' if chosen > 1 else ''}, store {target.uri}, "
        f"records {held.uri}{where}")
    try:
        runner.run()
    finally:
        if server is not None:
            server.shutdown()
    say(f"worker {runner.name}: stopped after {runner.finished} stage(s)")
