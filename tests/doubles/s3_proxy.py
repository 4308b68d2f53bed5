"""A loopback HTTP proxy in front of the moto S3 server that misbehaves on request.

Real HTTP on both sides, nothing in boto is patched: the S3 client under test talks to the
proxy (``AWS_ENDPOINT_URL_S3``), the proxy forwards to moto, unless a fault rule says to
answer 5xx, to stall and hang up (a timeout), to forward and then hang up (the answer is lost),
or to go away altogether (the listening socket closes, open connections are dropped).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Match = Callable[[str, str], bool]  # (method, path) -> applies?
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}


@dataclass
class Rule:
    action: str          # "500", "503", …, "stall", "drop", "die"
    times: float         # how many requests it hits (float("inf"): all)
    match: Match
    stall_s: float = 0.0
    code: str | None = None  # an error answer's <Code>: None, the usual one; "": no body at all


class S3Proxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.rules: list[Rule] = []
        self.log: list[tuple[str, str, str]] = []   # (method, path, what happened)
        self.lock = threading.Lock()
        self.dead = False
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: ThreadingHTTPServer | None = None

    # -- control --------------------------------------------------------------------------

    def fault(self, action: str, times: float = 1, match: Match = lambda m, p: True,
              stall_s: float = 0.0, code: str | None = None) -> None:
        with self.lock:
            self.rules.append(Rule(action, times, match, stall_s, code))

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def count(self, what: str, match: Match = lambda m, p: True) -> int:
        with self.lock:
            return sum(1 for m, p, w in self.log if w == what and match(m, p))

    def start(self) -> S3Proxy:
        self.dead = False
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Go away: refuse new connections and drop the open ones."""
        self.dead = True
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # -- the work -------------------------------------------------------------------------

    def _rule_for(self, method: str, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.times > 0 and rule.match(method, path):
                    rule.times -= 1
                    return rule
        return None

    def _note(self, method: str, path: str, what: str) -> None:
        with self.lock:
            self.log.append((method, path, what))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: S3Proxy

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _hang_up(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _any(self) -> None:
        proxy, method, path = self.owner, self.command, self.path
        body = self._body()
        if proxy.dead:
            proxy._note(method, path, "refused")
            return self._hang_up()
        rule = proxy._rule_for(method, path)
        action = rule.action if rule else "forward"
        if action == "die":
            proxy._note(method, path, "die")
            threading.Thread(target=proxy.stop, daemon=True).start()
            return self._hang_up()
        if action == "stall":
            proxy._note(method, path, "stall")
            time.sleep(rule.stall_s)
            return self._hang_up()
        if action.isdigit():
            proxy._note(method, path, action)
            code = rule.code if rule.code is not None else (
                "SlowDown" if action == "503" else "InternalError")
            payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                       f"<Message>injected by the test proxy</Message></Error>").encode()
            if not code:
                payload = b""
            self.send_response(int(action))
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            headers["Content-Length"] = str(len(body))
            upstream.request(method, path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        if action == "drop":  # the request was done; its answer never arrives
            proxy._note(method, path, "drop")
            return self._hang_up()
        proxy._note(method, path, "forward")
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in HOP | {"content-length", "date", "server"}:
                self.send_header(key, value)
        length = response.getheader("Content-Length") if method == "HEAD" else str(len(data))
        self.send_header("Content-Length", length or "0")
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any
