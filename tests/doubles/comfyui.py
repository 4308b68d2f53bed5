"""A ComfyUI test double: ComfyUI's HTTP + websocket API on loopback, without a GPU.

Routes as ComfyUI serves them: ``POST /upload/image`` (multipart), ``POST /prompt``,
``GET /history/{id}``, ``GET /view``, ``GET /system_stats``, ``POST /queue``, ``POST /interrupt``
and ``WS /ws?clientId=`` (``status``, ``execution_start``, ``execution_cached``, ``executing``,
``progress`` with a binary preview frame, ``executed``, ``execution_success`` /
``execution_error`` / ``execution_interrupted``, then ``executing`` with node null; the history is
written between the last two, as ComfyUI does).

``POST /prompt`` validates a graph as ComfyUI 0.3.64 does, from the node definitions a real
server published (``tests/data/comfyui/object_info.json``; :mod:`tests.doubles.comfyui_validation`
follows ``execution.py``'s ``validate_prompt`` / ``validate_inputs``): the same error types,
messages, details and 400/200 answers. Model-name combos are that server's files; a test can
take a model away by editing :attr:`ComfyUIDouble.object_info`.

It "runs" a graph by interpreting the few node classes the bundled workflow uses on small
numpy images: the sampler tints its latent with a colour made from the seed, masks and
composites behave as in ComfyUI, SaveImage stores a PNG of the requested size. A failure switch
makes a chosen node class raise an execution error with the exact fields ComfyUI sends.
Everything it receives is recorded for the tests: uploads, graphs, client ids, connections.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
from aiohttp import WSMsgType, web
from PIL import Image

from tests.doubles.comfyui_validation import load_object_info, validate_prompt


def seed_color(seed: int) -> np.ndarray:
    """The double's 'generation': a colour that depends only on the seed."""
    return np.frombuffer(hashlib.sha256(str(int(seed)).encode()).digest()[:3], np.uint8).astype(np.float32)


def tint(image: np.ndarray, seed: int) -> np.ndarray:
    return np.clip(0.5 * image.astype(np.float32) + 0.5 * seed_color(seed), 0, 255).astype(np.uint8)


@dataclass
class Received:
    uploads: list[dict] = field(default_factory=list)      # {name, subfolder, type, overwrite, size}
    prompts: list[dict] = field(default_factory=list)      # {prompt_id, client_id, prompt}
    ws_clients: list[str] = field(default_factory=list)    # client ids, one per websocket
    http_peers: set = field(default_factory=set)           # (host, port) of HTTP connections
    system_stats: int = 0
    cancelled: list[dict] = field(default_factory=list)
    answers: list[dict] = field(default_factory=list)      # every /prompt answer: {status, ...body}


class ComfyUIDouble:
    def __init__(self) -> None:
        self.received = Received()
        self.object_info = load_object_info()             # the captured server's node definitions
        self.files: dict[tuple[str, str, str], bytes] = {}   # (type, subfolder, name) -> bytes
        self.history: dict[str, dict] = {}
        self.sockets: dict[str, web.WebSocketResponse] = {}
        # behaviour switches, for failure tests
        self.prompt_status: int | None = None     # answer /prompt with this status (e.g. 500)
        self.execution_error: dict | None = None  # a node raises this (exception_type, _message)
        self.fail_at = "KSampler"                 # ... the node of this class
        self.interrupt = False                    # the run is interrupted at the sampler
        self.hang = False                         # accept prompts, never run them
        self.drop_socket = False                  # close the client's websocket once a prompt is queued
        self.step_delay_s = 0.0
        self.steps_reported = 3
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._lock: asyncio.Lock | None = None
        self._counter = 0
        self._tasks: set[asyncio.Task] = set()
        self.url = ""

    # ---- lifecycle (a thread with its own event loop) --------------------------------------

    def start(self) -> str:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True, name="comfyui-double")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the ComfyUI double did not start")
        return self.url

    async def _start(self) -> None:
        self._lock = asyncio.Lock()
        app = web.Application(client_max_size=64 * 2 ** 20)
        app.router.add_get("/system_stats", self._system_stats)
        app.router.add_post("/upload/image", self._upload)
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/history/{prompt_id}", self._history)
        app.router.add_get("/view", self._view)
        app.router.add_post("/queue", self._queue)
        app.router.add_post("/interrupt", self._interrupt)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            for task in list(self._tasks):  # runs still going when the test ends
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for ws in list(self.sockets.values()):
                await ws.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def reset(self) -> None:
        """Forget what was received and every failure switch (files stay)."""
        self.received = Received()
        self.object_info = load_object_info()
        self.prompt_status = self.execution_error = None
        self.fail_at = "KSampler"
        self.hang = self.drop_socket = self.interrupt = False
        self.step_delay_s = 0.0

    # ---- routes --------------------------------------------------------------------------

    def _peer(self, request: web.Request) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.received.http_peers.add(tuple(peer[:2]))

    async def _system_stats(self, request: web.Request) -> web.Response:
        self._peer(request)
        self.received.system_stats += 1
        return web.json_response({
            "system": {"os": "posix", "python_version": "3.11", "comfyui_version": "double",
                       "embedded_python": False, "ram_total": 2 ** 34, "ram_free": 2 ** 33},
            "devices": [{"name": "cuda:0 double", "type": "cuda", "index": 0,
                         "vram_total": 2 ** 36, "vram_free": 2 ** 35,
                         "torch_vram_total": 0, "torch_vram_free": 0}]})

    async def _upload(self, request: web.Request) -> web.Response:
        self._peer(request)
        form = await request.post()
        image = form.get("image")
        if image is None or not hasattr(image, "file"):
            return web.Response(status=400)
        kind = str(form.get("type") or "input")
        subfolder = str(form.get("subfolder") or "")
        data = image.file.read()
        try:
            Image.open(io.BytesIO(data)).verify()
        except Exception:  # noqa: BLE001
            return web.Response(status=400, text="not an image")
        name = image.filename
        self.files[(kind, subfolder, name)] = data
        self.received.uploads.append({"name": name, "subfolder": subfolder, "type": kind,
                                      "overwrite": str(form.get("overwrite")), "size": len(data)})
        return web.json_response({"name": name, "subfolder": subfolder, "type": kind})

    def _input_file(self, ref: str) -> bytes | None:
        """An uploaded file by the name LoadImage takes (``subfolder/name``, or ``name [input]``)."""
        kind = "input"
        for folder in ("input", "output", "temp"):
            if ref.endswith(f" [{folder}]"):
                ref, kind = ref[:-len(folder) - 3], folder
        subfolder, _, name = ref.rpartition("/")
        return self.files.get((kind, subfolder, name))

    async def _prompt(self, request: web.Request) -> web.Response:
        self._peer(request)
        body = await request.json()
        graph, client_id = body.get("prompt"), body.get("client_id")
        if self.prompt_status is not None:
            return web.Response(status=self.prompt_status, text="double: failing on purpose")
        if "prompt" not in body:  # server.py post_prompt
            return web.json_response({"error": {"type": "no_prompt", "message": "No prompt provided",
                                                "details": "No prompt provided", "extra_info": {}},
                                      "node_errors": {}}, status=400)
        status, answer, good = validate_prompt(self.object_info, graph,
                                               lambda ref: self._input_file(ref) is not None)
        self.received.answers.append({"status": status, **answer})
        if status != 200:
            return web.json_response(answer, status=status)
        prompt_id = str(uuid.uuid4())
        self._counter += 1
        self.received.prompts.append({"prompt_id": prompt_id, "client_id": client_id, "prompt": graph})
        if self.drop_socket and client_id in self.sockets:
            await self.sockets[client_id].close()
        if not self.hang:
            task = asyncio.get_running_loop().create_task(self._execute(prompt_id, client_id, graph, good))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response({"prompt_id": prompt_id, "number": self._counter, **answer})

    async def _history(self, request: web.Request) -> web.Response:
        self._peer(request)
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def _view(self, request: web.Request) -> web.Response:
        self._peer(request)
        key = (request.query.get("type", "output"), request.query.get("subfolder", ""),
               request.query.get("filename", ""))
        if key not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[key], content_type="image/png")

    async def _queue(self, request: web.Request) -> web.Response:
        self.received.cancelled.append({"queue": await request.json()})
        return web.Response(status=200)

    async def _interrupt(self, request: web.Request) -> web.Response:
        self.received.cancelled.append({"interrupt": await request.json()})
        return web.Response(status=200)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        client_id = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[client_id] = ws
        self.received.ws_clients.append(client_id)
        await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}},
                                                      "sid": client_id}})
        async for message in ws:
            if message.type == WSMsgType.ERROR:
                break
        if self.sockets.get(client_id) is ws:
            del self.sockets[client_id]
        return ws

    # ---- running a graph -----------------------------------------------------------------

    async def _send(self, client_id: str | None, kind: str, data: dict | bytes) -> None:
        ws = self.sockets.get(client_id or "")
        if ws is None or ws.closed:
            return
        try:
            if isinstance(data, bytes):
                await ws.send_bytes(data)
            else:
                await ws.send_json({"type": kind, "data": data})
        except ConnectionError:
            pass

    async def _execute(self, prompt_id: str, client_id: str | None, graph: dict, good: list[str]) -> None:
        async with self._lock:  # one prompt at a time, like ComfyUI's queue
            messages = []

            async def say(kind: str, data: dict, record: bool = True) -> None:
                data = {**data, "prompt_id": prompt_id}
                if record:
                    messages.append([kind, {**data, "timestamp": int(time.time() * 1000)}])
                await self._send(client_id, kind, data)

            await say("execution_start", {})
            await say("execution_cached", {"nodes": []})
            outputs: dict[str, dict] = {}
            values: dict[str, tuple] = {}
            executed: list[str] = []
            try:
                for nid in self._order(graph, good):
                    await say("executing", {"node": nid, "display_node": nid}, record=False)
                    node = graph[nid]
                    if node["class_type"] == "KSampler":
                        steps = min(int(node["inputs"]["steps"]), self.steps_reported)
                        for step in range(1, steps + 1):
                            await asyncio.sleep(self.step_delay_s)
                            await say("progress", {"value": step, "max": steps, "node": nid}, record=False)
                            # a preview frame: event type 1 (PREVIEW_IMAGE), format 2 (PNG)
                            await self._send(client_id, "", b"\x00\x00\x00\x01\x00\x00\x00\x02" + b"png?")
                        if self.interrupt:
                            raise _NodeFailure(nid, node["class_type"], None)
                    if self.execution_error and node["class_type"] == self.fail_at:
                        raise _NodeFailure(nid, node["class_type"], self.execution_error)
                    values[nid] = self._run_node(nid, node, values, graph)
                    executed.append(nid)
                    if self.object_info[node["class_type"]].get("output_node"):
                        outputs[nid] = values[nid][0]
                        await say("executed", {"node": nid, "display_node": nid, "output": outputs[nid]},
                                  record=False)
            except _NodeFailure as failure:
                where = {"node_id": failure.node_id, "node_type": failure.node_type, "executed": executed}
                if failure.error is None:  # execution.py handle_execution_error: interrupted
                    await say("execution_interrupted", where)
                else:
                    await say("execution_error", {**where, **failure.error, "traceback": ["double"],
                                                  "current_inputs": {}, "current_outputs": []})
                self.history[prompt_id] = self._entry(graph, prompt_id, client_id, {}, "error", messages)
                await say("executing", {"node": None}, record=False)
                return
            await say("execution_success", {})
            await asyncio.sleep(0.05)  # ComfyUI writes the history after this message
            self.history[prompt_id] = self._entry(graph, prompt_id, client_id, outputs, "success", messages)
            await say("executing", {"node": None}, record=False)

    @staticmethod
    def _entry(graph, prompt_id, client_id, outputs, status, messages) -> dict:
        return {"prompt": [0, prompt_id, graph, {"client_id": client_id}, list(outputs)],
                "outputs": outputs,
                "status": {"status_str": status, "completed": status == "success", "messages": messages},
                "meta": {nid: {"node_id": nid, "display_node": nid} for nid in outputs}}

    @staticmethod
    def _order(graph: dict, outputs: list[str]) -> list[str]:
        """The nodes the valid outputs need, each after its inputs (others never run)."""
        done: list[str] = []

        def visit(nid: str) -> None:
            if nid in done:
                return
            for value in graph[nid]["inputs"].values():
                if isinstance(value, list):
                    visit(str(value[0]))
            done.append(nid)

        for nid in outputs:
            visit(nid)
        return done

    def _run_node(self, nid: str, node: dict, values: dict, graph: dict) -> tuple:
        ins = {k: (values[str(v[0])][v[1]] if isinstance(v, list) else v)
               for k, v in node["inputs"].items()}
        kind = node["class_type"]
        if kind == "LoadImage":
            image = np.asarray(Image.open(io.BytesIO(self._input_file(ins["image"]))).convert("RGB"))
            return image, np.zeros(image.shape[:2], np.float32)
        if kind == "LoadImageMask":
            image = Image.open(io.BytesIO(self._input_file(ins["image"]))).convert("RGBA")
            channel = np.asarray(image)[..., "rgba".index(ins["channel"][0])].astype(np.float32) / 255
            return (1 - channel if ins["channel"] == "alpha" else channel,)
        if kind == "ImageScale":
            image = Image.fromarray(ins["image"]).resize((int(ins["width"]), int(ins["height"])))
            return (np.asarray(image),)
        if kind in ("VAEEncode",):
            return ({"image": ins["pixels"], "mask": None},)
        if kind == "SetLatentNoiseMask":
            return ({**ins["samples"], "mask": ins["mask"]},)
        if kind == "KSampler":
            latent = ins["latent_image"]
            return ({**latent, "image": tint(latent["image"], ins["seed"])},)
        if kind == "VAEDecode":
            return (ins["samples"]["image"],)
        if kind == "ImageCompositeMasked":
            dest, src = ins["destination"].astype(np.float32), ins["source"].astype(np.float32)
            mask = ins.get("mask")
            if mask is None:
                mask = np.ones(dest.shape[:2], np.float32)
            mask = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).resize(dest.shape[1::-1]),
                              np.float32)[..., None] / 255
            return (np.clip(mask * src + (1 - mask) * dest + 0.5, 0, 255).astype(np.uint8),)
        if kind == "SaveImage":
            name = f"{ins['filename_prefix']}_{uuid.uuid4().hex[:8]}_.png"
            out = io.BytesIO()
            Image.fromarray(ins["images"]).save(out, format="PNG")
            self.files[("output", "", name)] = out.getvalue()
            return ({"images": [{"filename": name, "subfolder": "", "type": "output"}]},)
        if kind == "CheckpointLoaderSimple":
            return ("MODEL", "CLIP", "VAE")
        if kind == "ControlNetApplyAdvanced":
            return (ins["positive"], ins["negative"])
        if kind == "CLIPTextEncode":
            return ({"text": ins["text"]},)
        return tuple(f"{kind}:{i}" for i in range(max(1, len(self.object_info[kind]["output"]))))


class _NodeFailure(Exception):
    """A node fails: ``error`` is what ComfyUI reports, None for an interrupt."""

    def __init__(self, node_id: str, node_type: str, error: dict | None) -> None:
        super().__init__(error)
        self.node_id, self.node_type, self.error = node_id, node_type, error
