"""A ComfyUI test double: ComfyUI's HTTP + websocket API on loopback, without a GPU.

Routes as ComfyUI serves them: ``POST /upload/image`` (multipart), ``POST /prompt`` (validates
the graph like ComfyUI: known node classes, required inputs, links to existing nodes, images
that were uploaded; else HTTP 400 with ``error`` and ``node_errors``), ``GET /history/{id}``,
``GET /view``, ``GET /system_stats``, ``POST /queue``, ``POST /interrupt`` and ``WS /ws?clientId=``
(``status``, ``execution_start``, ``executing``, ``progress`` with a binary preview frame,
``executed``, ``execution_success`` / ``execution_error``, then ``executing`` with node null;
the history is written between the last two, as ComfyUI does).

It "runs" a graph by interpreting the few node classes the bundled workflow uses on small
numpy images: the sampler tints its latent with a colour made from the seed, masks and
composites behave as in ComfyUI, SaveImage stores a PNG of the requested size. Everything it
receives is recorded for the tests: uploads, graphs, client ids, connections.
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

# class_type -> (required inputs, number of outputs). Optional inputs are not listed.
NODES: dict[str, tuple[tuple[str, ...], int]] = {
    "CheckpointLoaderSimple": (("ckpt_name",), 3),
    "LoadImage": (("image",), 2),
    "LoadImageMask": (("image", "channel"), 1),
    "ImageScale": (("image", "upscale_method", "width", "height", "crop"), 1),
    "IPAdapterUnifiedLoaderFaceID": (("model", "preset", "lora_strength", "provider"), 2),
    "IPAdapterFaceID": (("model", "ipadapter", "image", "weight", "weight_faceidv2", "weight_type",
                         "combine_embeds", "start_at", "end_at", "embeds_scaling"), 2),
    "CLIPTextEncode": (("text", "clip"), 1),
    "ControlNetLoader": (("control_net_name",), 1),
    "Canny": (("image", "low_threshold", "high_threshold"), 1),
    "ControlNetApplyAdvanced": (("positive", "negative", "control_net", "image", "strength",
                                 "start_percent", "end_percent"), 2),
    "VAEEncode": (("pixels", "vae"), 1),
    "SetLatentNoiseMask": (("samples", "mask"), 1),
    "KSampler": (("model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive",
                  "negative", "latent_image", "denoise"), 1),
    "VAEDecode": (("samples", "vae"), 1),
    "ImageCompositeMasked": (("destination", "source", "x", "y", "resize_source"), 1),
    "SaveImage": (("images", "filename_prefix"), 0),
}
OUTPUT_NODES = {"SaveImage"}


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


class ComfyUIDouble:
    def __init__(self) -> None:
        self.received = Received()
        self.files: dict[tuple[str, str, str], bytes] = {}   # (type, subfolder, name) -> bytes
        self.history: dict[str, dict] = {}
        self.sockets: dict[str, web.WebSocketResponse] = {}
        # behaviour switches, for failure tests
        self.prompt_status: int | None = None     # answer /prompt with this status (e.g. 500)
        self.execution_error: dict | None = None  # the sampler raises this (exception_type, _message)
        self.hang = False                         # accept prompts, never run them
        self.drop_socket = False                  # close the client's websocket once a prompt is queued
        self.step_delay_s = 0.0
        self.steps_reported = 3
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._lock: asyncio.Lock | None = None
        self._counter = 0
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
            for ws in list(self.sockets.values()):
                await ws.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def reset(self) -> None:
        """Forget what was received and every failure switch (files stay)."""
        self.received = Received()
        self.prompt_status = self.execution_error = None
        self.hang = self.drop_socket = False
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
        subfolder, _, name = ref.rpartition("/")
        return self.files.get(("input", subfolder, name))

    def validate(self, graph: object) -> dict | None:
        """ComfyUI's answer to a bad graph, or None when it is fine."""
        if not isinstance(graph, dict):
            return {"error": {"type": "invalid_prompt", "message": "Prompt is not a dict",
                              "details": "", "extra_info": {}}, "node_errors": {}}
        for nid, node in graph.items():
            if not isinstance(node, dict) or node.get("class_type") not in NODES:
                ctype = node.get("class_type") if isinstance(node, dict) else None
                return {"error": {"type": "invalid_prompt",
                                  "message": f"Cannot execute because node {ctype} does not exist.",
                                  "details": f"Node ID '#{nid}'", "extra_info": {}},
                        "node_errors": {}}
        outputs = [nid for nid, node in graph.items() if node["class_type"] in OUTPUT_NODES]
        if not outputs:
            return {"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs",
                              "details": "", "extra_info": {}}, "node_errors": []}
        node_errors = {}
        for nid, node in graph.items():
            required, _ = NODES[node["class_type"]]
            inputs = node.get("inputs") or {}
            errors = []
            for name in required:
                if name not in inputs:
                    errors.append({"type": "required_input_missing", "message": "Required input is missing",
                                   "details": name, "extra_info": {"input_name": name}})
            for name, value in inputs.items():
                if isinstance(value, list):
                    ok = (len(value) == 2 and str(value[0]) in graph and isinstance(value[1], int)
                          and value[1] < NODES[graph[str(value[0])]["class_type"]][1])
                    if not ok:
                        errors.append({"type": "bad_linked_input", "message": "Bad linked input",
                                       "details": f"{name}: {value}", "extra_info": {"input_name": name}})
            if node["class_type"] in ("LoadImage", "LoadImageMask") and isinstance(inputs.get("image"), str):
                if self._input_file(inputs["image"]) is None:
                    errors.append({"type": "custom_validation_failed",
                                   "message": "Custom validation failed for node",
                                   "details": f"image - Invalid image file: {inputs['image']}",
                                   "extra_info": {}})
            if errors:
                node_errors[nid] = {"errors": errors, "dependent_outputs": outputs,
                                    "class_type": node["class_type"]}
        if node_errors:
            return {"error": {"type": "prompt_outputs_failed_validation",
                              "message": "Prompt outputs failed validation", "details": "",
                              "extra_info": {}}, "node_errors": node_errors}
        return None

    async def _prompt(self, request: web.Request) -> web.Response:
        self._peer(request)
        body = await request.json()
        graph, client_id = body.get("prompt"), body.get("client_id")
        if self.prompt_status is not None:
            return web.Response(status=self.prompt_status, text="double: failing on purpose")
        problem = self.validate(graph)
        if problem is not None:
            return web.json_response(problem, status=400)
        prompt_id = str(uuid.uuid4())
        self._counter += 1
        self.received.prompts.append({"prompt_id": prompt_id, "client_id": client_id, "prompt": graph})
        if self.drop_socket and client_id in self.sockets:
            await self.sockets[client_id].close()
        if not self.hang:
            asyncio.get_running_loop().create_task(self._execute(prompt_id, client_id, graph))
        return web.json_response({"prompt_id": prompt_id, "number": self._counter, "node_errors": {}})

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

    async def _execute(self, prompt_id: str, client_id: str | None, graph: dict) -> None:
        async with self._lock:  # one prompt at a time, like ComfyUI's queue
            messages = []

            async def say(kind: str, data: dict) -> None:
                data = {**data, "prompt_id": prompt_id}
                messages.append([kind, {**data, "timestamp": int(time.time() * 1000)}])
                await self._send(client_id, kind, data)

            await say("execution_start", {})
            outputs: dict[str, dict] = {}
            values: dict[str, tuple] = {}
            try:
                for nid in self._order(graph):
                    await say("executing", {"node": nid, "display_node": nid})
                    node = graph[nid]
                    if node["class_type"] == "KSampler":
                        steps = min(int(node["inputs"]["steps"]), self.steps_reported)
                        for step in range(1, steps + 1):
                            await asyncio.sleep(self.step_delay_s)
                            await say("progress", {"value": step, "max": steps, "node": nid})
                            # a preview frame: event type 1 (PREVIEW_IMAGE), format 2 (PNG)
                            await self._send(client_id, "", b"\x00\x00\x00\x01\x00\x00\x00\x02" + b"png?")
                        if self.execution_error:
                            raise _NodeFailure(nid, node["class_type"], self.execution_error)
                    values[nid] = self._run_node(nid, node, values, graph)
                    if node["class_type"] in OUTPUT_NODES:
                        outputs[nid] = values[nid][0]
                        await say("executed", {"node": nid, "display_node": nid, "output": outputs[nid]})
            except _NodeFailure as failure:
                await say("execution_error", {"node_id": failure.node_id, "node_type": failure.node_type,
                                              "executed": [], **failure.error,
                                              "traceback": ["double"], "current_inputs": {},
                                              "current_outputs": {}})
                self.history[prompt_id] = self._entry(graph, prompt_id, client_id, {}, "error", messages)
                await say("executing", {"node": None})
                return
            await say("execution_success", {})
            await asyncio.sleep(0.05)  # ComfyUI writes the history after this message
            self.history[prompt_id] = self._entry(graph, prompt_id, client_id, outputs, "success", messages)
            await say("executing", {"node": None})

    @staticmethod
    def _entry(graph, prompt_id, client_id, outputs, status, messages) -> dict:
        return {"prompt": [0, prompt_id, graph, {"client_id": client_id}, list(outputs)],
                "outputs": outputs,
                "status": {"status_str": status, "completed": status == "success", "messages": messages},
                "meta": {nid: {"node_id": nid, "display_node": nid} for nid in outputs}}

    @staticmethod
    def _order(graph: dict) -> list[str]:
        done: list[str] = []

        def visit(nid: str) -> None:
            if nid in done:
                return
            for value in graph[nid]["inputs"].values():
                if isinstance(value, list):
                    visit(str(value[0]))
            done.append(nid)

        for nid in graph:
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
        return tuple(f"{kind}:{i}" for i in range(max(1, NODES[kind][1])))


class _NodeFailure(Exception):
    def __init__(self, node_id: str, node_type: str, error: dict) -> None:
        super().__init__(error)
        self.node_id, self.node_type, self.error = node_id, node_type, error
