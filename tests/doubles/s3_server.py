"""A moto S3 server for the tests: ``python -m tests.doubles.s3_server PORT``.

moto checks a conditional write (If-Match / If-None-Match) and then stores the object in two
separate moves, so two concurrent requests can both pass the check; real S3 decides them
atomically. Handling one request at a time gives moto the same guarantee, which the job
record's compare-and-swap relies on.
"""

from __future__ import annotations

import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


class OneAtATime:
    def __init__(self, app) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            return list(self.app(environ, start_response))


def main() -> None:
    port = int(sys.argv[1])
    run_simple("127.0.0.1", port, OneAtATime(DomainDispatcherApplication(create_backend_app)),
               threaded=True)


if __name__ == "__main__":
    main()
