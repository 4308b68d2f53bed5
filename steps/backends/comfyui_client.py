"""The ComfyUI HTTP + websocket client: upload images, queue a graph, follow it, fetch the result.

One :class:`ComfyUIClient` holds ONE keep-alive HTTP connection and ONE websocket
(``/ws?clientId=…``) for a whole chunk. It follows a queued prompt on the websocket (checking
``/history/{id}`` while the socket is quiet, and polling it if the socket breaks) until a
deadline. What the server answers becomes an error here, by what ComfyUI really sends
(:mod:`steps.backends.comfyui_errors` holds the rules).
"""

from __future__ import annotations

import http.client
import json
import sys
import time
import urllib.parse
import urllib.request
import uuid

from steps.backends.comfyui_errors import (
    ComfyUIError,
    ComfyUITimeout,
    execution_error,
    rejection,
)
from steps.core.errors import InputError

DEFAULT_TIMEOUT_S = 600.0      # one page, queued to decoded
DEFAULT_REQUEST_TIMEOUT_S = 60.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
SUBFOLDER = "bookjob"
BUNDLED = "bookjob's bundled face-transfer workflow"


def _log(message: str) -> None:
    print(f"comfyui: {message}", file=sys.stderr, flush=True)



class ComfyUIClient:
    """One ComfyUI server: a keep-alive HTTP connection and a websocket, opened once."""

    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
                 connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S, poll_s: float = 1.0,
                 workflow: str = BUNDLED) -> None:
        parsed = urllib.parse.urlsplit(url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InputError("bad_comfyui_url", f"ComfyUI address {url!r} is not an http:// or "
                                                "https:// URL; pass --comfyui-url http://HOST:PORT.")
        self.url = url.strip().rstrip("/")
        self.secure = parsed.scheme == "https"
        self.host = parsed.hostname
        self.port = parsed.port or (443 if self.secure else 80)
        self.base = parsed.path.rstrip("/")
        self.timeout_s = timeout_s
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.poll_s = poll_s
        self.workflow = workflow  # named in errors the workflow causes
        self.uploaded: set[str] = set()
        self.client_id = uuid.uuid4().hex
        self.http_connections = 0
        self.ws_connections = 0
        self._http: http.client.HTTPConnection | None = None
        self._ws = None

    # -- connections

    def open(self) -> ComfyUIClient:
        """Check the server answers and open the websocket."""
        status, data = self._request("GET", "/system_stats")
        if status != 200:
            raise ComfyUIError(f"ComfyUI at {self.url} answered {status} to /system_stats")
        self._connect_ws()
        return self

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass
            self._ws = None
        self._drop_http()

    def __enter__(self) -> ComfyUIClient:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _connect_ws(self) -> None:
        from websockets.sync.client import connect

        scheme = "wss" if self.secure else "ws"
        url = f"{scheme}://{self.host}:{self.port}{self.base}/ws?clientId={self.client_id}"
        try:
            # legacy=True: a connection held across calls (closed by close()), not a context
            self._ws = connect(url, open_timeout=self.connect_timeout_s, proxy=None,
                               max_size=2 ** 26, close_timeout=2, legacy=True)
        except Exception as e:  # noqa: BLE001 - refused, timed out, bad handshake
            raise ComfyUIError(f"cannot open ComfyUI's websocket at {url}: {e}") from e
        self.ws_connections += 1

    def _drop_http(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One request on the keep-alive connection (reopened once if the server dropped it)."""
        for attempt in (1, 2):
            fresh = self._http is None
            if fresh:
                kind = http.client.HTTPSConnection if self.secure else http.client.HTTPConnection
                self._http = kind(self.host, self.port, timeout=self.request_timeout_s)
                self.http_connections += 1
            try:
                self._http.request(method, self.base + path, body=body, headers=headers or {})
                response = self._http.getresponse()
                data = response.read()
                if response.will_close:
                    self._drop_http()
                return response.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self._drop_http()
                if fresh or attempt == 2:
                    raise ComfyUIError(f"ComfyUI at {self.url} dropped {method} {path}: {e}") from e
            except (OSError, http.client.HTTPException) as e:  # refused, timed out, garbled
                self._drop_http()
                raise ComfyUIError(f"ComfyUI at {self.url} is unreachable ({type(e).__name__}: "
                                   f"{e}) for {method} {path}") from e
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, payload: dict | None = None) -> tuple[int, object]:
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, data = self._request(method, path, body, headers)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data[:300].decode("utf-8", "replace")

    @staticmethod
    def _fail(status: int, what: str, detail: object) -> ComfyUIError:
        return ComfyUIError(f"ComfyUI answered HTTP {status} to {what}: {str(detail)[:300]}")

    # -- the API

    def upload_image(self, name: str, png: bytes, subfolder: str = SUBFOLDER) -> str:
        """Upload a PNG into ComfyUI's input folder; the name a LoadImage node takes."""
        boundary = uuid.uuid4().hex
        parts = []
        for field, value in (("type", "input"), ("subfolder", subfolder), ("overwrite", "true")):
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n'
                         f"{value}\r\n".encode())
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                     f'filename="{name}"\r\nContent-Type: image/png\r\n\r\n'.encode() + png + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        status, data = self._request("POST", "/upload/image", b"".join(parts),
                                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 200:
            raise self._fail(status, f"the upload of {name}", data[:300])
        answer = json.loads(data)
        folder = answer.get("subfolder") or ""
        ref = f"{folder}/{answer['name']}" if folder else answer["name"]
        self.uploaded.add(ref)
        return ref

    def queue(self, graph: dict, what: str) -> str:
        """Queue a graph; its prompt id. A graph ComfyUI rejects is a
        :class:`~steps.core.errors.SetupError` (see :func:`~steps.backends.comfyui_errors.rejection`)."""
        status, answer = self._json("POST", "/prompt", {"prompt": graph, "client_id": self.client_id})
        if (status == 400 and isinstance(answer, dict) and "error" in answer) or (
                status == 200 and isinstance(answer, dict) and answer.get("node_errors")):
            raise rejection(answer, server=self.url, workflow=self.workflow, uploaded=self.uploaded)
        if status != 200 or not isinstance(answer, dict) or "prompt_id" not in answer:
            raise self._fail(status, f"the prompt for {what}", answer)
        return str(answer["prompt_id"])

    def history(self, prompt_id: str) -> dict | None:
        """The finished run's history entry, or None while it is queued or running."""
        status, answer = self._json("GET", f"/history/{urllib.parse.quote(prompt_id)}")
        if status != 200:
            raise self._fail(status, f"/history/{prompt_id}", answer)
        entry = answer.get(prompt_id) if isinstance(answer, dict) else None
        if not entry:
            return None
        state = entry.get("status") or {}
        if state.get("completed") or state.get("status_str") in ("success", "error"):
            return entry
        return None

    def view(self, image: dict) -> bytes:
        query = urllib.parse.urlencode({"filename": image["filename"],
                                        "subfolder": image.get("subfolder", ""),
                                        "type": image.get("type", "output")})
        status, data = self._request("GET", f"/view?{query}")
        if status != 200:
            raise self._fail(status, f"/view of {image['filename']}", data[:300])
        return data

    def cancel(self, prompt_id: str) -> None:
        """Best effort: drop a prompt from the queue, or stop it if it is the one running."""
        for path, payload in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                self._json("POST", path, payload)
            except ComfyUIError:
                pass

    def wait(self, prompt_id: str, what: str, timeout_s: float | None = None) -> dict:
        """Follow a queued prompt to its end (websocket, else /history); its history entry."""
        from websockets.exceptions import ConnectionClosed

        limit = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        finished = False  # the socket said so; the history entry may lag a moment
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.cancel(prompt_id)
                raise ComfyUITimeout(f"ComfyUI did not finish {what} (prompt {prompt_id}) "
                                     f"within {limit:g} s")
            if self._ws is None or finished:
                entry = self.history(prompt_id)
                if entry is not None:
                    return self._checked(entry, what)
                time.sleep(min(self.poll_s / (20 if finished else 1), max(remaining, 0)))
                continue
            try:
                raw = self._ws.recv(timeout=min(self.poll_s, remaining))
            except TimeoutError:  # a quiet socket: make sure no message was missed
                entry = self.history(prompt_id)
                if entry is not None:
                    return self._checked(entry, what)
                continue
            except (ConnectionClosed, OSError) as e:
                _log(f"websocket lost ({e}); polling /history for {what}")
                self._ws = None
                continue
            if isinstance(raw, bytes):  # preview frames
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            data = message.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            kind = message.get("type")
            if kind in ("execution_error", "execution_interrupted"):
                raise execution_error(kind, data, what, server=self.url)
            if kind == "execution_success" or (kind == "executing" and data.get("node") is None):
                finished = True

    def _checked(self, entry: dict, what: str) -> dict:
        state = entry.get("status") or {}
        if state.get("status_str") == "error":
            for kind, data in state.get("messages") or []:
                if kind in ("execution_error", "execution_interrupted"):
                    raise execution_error(kind, data, what, server=self.url)
            raise ComfyUIError(f"ComfyUI reports an error for {what} without details")
        return entry

    def run(self, graph: dict, output_node: str, what: str) -> bytes:
        """Queue, wait, and fetch the first image of ``output_node``."""
        started = time.monotonic()
        prompt_id = self.queue(graph, what)
        entry = self.wait(prompt_id, what)
        images = ((entry.get("outputs") or {}).get(output_node) or {}).get("images") or []
        if not images:
            raise ComfyUIError(f"ComfyUI finished {what} (prompt {prompt_id}) without an image "
                               f"from node {output_node}")
        data = self.view(images[0])
        _log(f"{what}: prompt {prompt_id} done in {time.monotonic() - started:.2f} s")
        return data


def wait_ready(url: str, timeout_s: float = 300.0, interval_s: float = 1.0) -> dict:
    """Wait until ComfyUI answers ``/system_stats`` (a sidecar starting); its stats."""
    target = url.rstrip("/") + "/system_stats"
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            with urllib.request.urlopen(target, timeout=max(0.1, min(10.0, timeout_s))) as response:
                return json.loads(response.read())
        except Exception as e:  # noqa: BLE001 - not up yet: refused, 5xx, garbage
            last = e
        if time.monotonic() + interval_s > deadline:
            raise ComfyUIError(f"ComfyUI at {url} was not ready within {timeout_s:g} s ({last})")
        time.sleep(interval_s)
