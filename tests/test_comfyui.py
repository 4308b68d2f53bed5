"""The ``comfyui`` face backend against a ComfyUI test double over real HTTP and websocket:
uploads, graph contents, seeds, one connection per chunk, error mapping, timeouts, readiness,
and a whole book through ``bookjob run`` with both production backends."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

try:
    from tests.doubles.comfyui import ComfyUIDouble, seed_color
except ImportError as e:  # aiohttp missing: say how to get it, never skip
    raise ImportError(f"the ComfyUI test double needs aiohttp ({e}): run `make setup`") from e

from steps.backends import comfyui
from steps.backends.classic import analyze_heuristic
from steps.backends.comfyui import ComfyUIFaceTransfer, load_workflow, node_ids, slot_region
from steps.backends.comfyui_client import ComfyUIClient, ComfyUIError, ComfyUITimeout, wait_ready
from steps.backgrounds import make_backgrounds, page_seed
from steps.core.errors import InputError, SetupError
from steps.core.images import load_page, load_photo
from steps.core.job import JobRecord, Status
from steps.core.manifest import load_book
from steps.core.records import create_job, read_job, update_job
from steps.core.store import LocalStore, upload_key
from steps.plan import draw_seeds
from tests.doubles.tiny_qwen import tiny_qwen  # noqa: F401 - the session fixture
from tests.helpers import make_book

JOB = "cf-1"
PROMPTS = {1: ("child in a sunny forest, watercolor", "blurry, deformed"),
           3: ("child on a hill at dusk", "extra fingers")}


@pytest.fixture(scope="module")
def server():
    double = ComfyUIDouble()
    double.start()
    yield double
    double.stop()


@pytest.fixture
def comfy(server) -> ComfyUIDouble:
    server.reset()
    return server


@pytest.fixture
def prompted_book(tmp_path) -> Path:
    """The test book with scene prompts on its face pages (1 and 3)."""
    book = make_book(tmp_path / "book")
    manifest = yaml.safe_load((book / "book.yaml").read_text())
    for page in manifest["pages"]:
        if page["num"] in PROMPTS:
            page["prompt"], page["negative_prompt"] = PROMPTS[page["num"]]
    (book / "book.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return book


def new_job(tmp_path: Path, book: Path, portrait: Path, *, randomize: bool = False,
            job_id: str = JOB) -> LocalStore:
    """A job that has been analysed (heuristic) and planned, in a local store."""
    store = LocalStore(tmp_path / "store")
    key = upload_key(job_id, "png")
    store.write(key, portrait.read_bytes())
    create_job(store, JobRecord(job_id=job_id, book_uri=str(book), photo_key=key,
                                child_name="Mia", child_age=5, child_gender="girl"))
    analysis = analyze_heuristic(load_photo(portrait.read_bytes()), "girl")

    def analysed(record: JobRecord) -> None:
        record.analysis = analysis
        if randomize:  # a regeneration: the plan step draws fresh seeds
            draw_seeds(record, [1, 3])
        record.move_to(Status.ANALYZING_COMPLETED)
        record.move_to(Status.PREPAY_GENERATING)

    update_job(store, job_id, analysed)
    return store


def by_title(graph: dict) -> dict[str, dict]:
    return {name: graph[nid]["inputs"] for name, nid in node_ids(graph).items()}


def pixels(store: LocalStore, key: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(store.read(key))).convert("RGB"), dtype=int)


def options(url: str, **more) -> dict:
    return {"url": url, "job_id": JOB, "timeout_s": 10, **more}


# ---- a chunk, end to end in process -------------------------------------------------------


def test_a_chunk_uses_one_connection_and_sends_the_pages_graphs(comfy, prompted_book, portrait, tmp_path):
    store = new_job(tmp_path, prompted_book, portrait)
    loaded = load_book(str(prompted_book))
    made = make_backgrounds(store, JOB, loaded, [1, 2, 3, 4], "comfyui", options(comfy.url))
    assert [a.page for a in made] == [1, 2, 3, 4]

    # one websocket, one HTTP keep-alive connection, one readiness check: for the whole chunk
    assert len(comfy.received.ws_clients) == 1
    assert len(comfy.received.http_peers) == 1
    assert comfy.received.system_stats == 1
    # the child once, then a base crop and a mask per face page
    assert [u["name"] for u in comfy.received.uploads] == [
        f"{JOB}-child.png", f"{JOB}-p01-base.png", f"{JOB}-p01-mask.png",
        f"{JOB}-p03-base.png", f"{JOB}-p03-mask.png"]
    assert {(u["subfolder"], u["type"], u["overwrite"]) for u in comfy.received.uploads} == {
        ("bookjob", "input", "true")}

    record = read_job(store, JOB)
    analysis_prompt = record.analysis.prompt
    assert record.generation_retry.seeds == {"1": page_seed(JOB, 1, False), "3": page_seed(JOB, 3, False)}
    assert len(comfy.received.prompts) == 2
    for sent, num in zip(comfy.received.prompts, (1, 3)):
        assert sent["client_id"] == comfy.received.ws_clients[0]
        inputs = by_title(sent["prompt"])
        assert inputs["prompt"]["text"] == f"{PROMPTS[num][0]}, {analysis_prompt}"
        assert inputs["negative_prompt"]["text"] == PROMPTS[num][1]
        assert inputs["sampler"]["seed"] == record.generation_retry.seeds[str(num)]
        assert inputs["child_image"]["image"] == f"bookjob/{JOB}-child.png"
        assert inputs["base_image"]["image"] == f"bookjob/{JOB}-p{num:02d}-base.png"
        assert inputs["face_mask"]["image"] == f"bookjob/{JOB}-p{num:02d}-mask.png"
        assert (inputs["size"]["width"], inputs["size"]["height"]) == (comfyui.GENERATION_PX,) * 2
        base = Image.open(io.BytesIO(comfy.files[("input", "bookjob", f"{JOB}-p{num:02d}-base.png")]))
        assert base.size == (comfyui.GENERATION_PX,) * 2

    # the face slot carries the double's seed tint; everything outside the slot's square is the page
    book = loaded.book
    for num in (1, 3):
        page = book.page(num)
        base = np.asarray(load_page(loaded.read(page.base), book.output.page_size_px), dtype=int)
        out = pixels(store, f"layout/{JOB}/pages/page_{num:02d}_bg.png")
        region = slot_region(book.output.page_size_px, (page.face.left_eye, page.face.right_eye))
        outside = np.ones(out.shape[:2], bool)
        outside[region.y:region.y + region.side, region.x:region.x + region.side] = False
        assert np.array_equal(out[outside], base[outside])
        cx, cy = (round(v) for v in region.center)
        expected = 0.5 * base[cy, cx] + 0.5 * seed_color(record.generation_retry.seeds[str(num)])
        assert np.abs(out[cy, cx] - expected).max() <= 4, (out[cy, cx], expected)
    # a page without a face is the base illustration
    plain = np.asarray(load_page(loaded.read(book.page(2).base), book.output.page_size_px), dtype=int)
    assert np.array_equal(pixels(store, f"layout/{JOB}/pages/page_02_bg.png"), plain)


def test_seeds_are_fixed_per_job_and_page_unless_randomized(comfy, prompted_book, portrait, tmp_path):
    loaded = load_book(str(prompted_book))
    fixed = new_job(tmp_path / "a", prompted_book, portrait)
    make_backgrounds(fixed, JOB, loaded, [1, 3], "comfyui", options(comfy.url))
    recorded = dict(read_job(fixed, JOB).generation_retry.seeds)
    make_backgrounds(fixed, JOB, loaded, [1, 3], "comfyui", options(comfy.url))
    # the same seeds again: the pages' inputs are unchanged, so nothing is sent a second time
    assert len(comfy.received.prompts) == 2
    first = [by_title(p["prompt"])["sampler"]["seed"] for p in comfy.received.prompts]
    assert first == [recorded["1"], recorded["3"]] and first[0] != first[1]
    assert first == [page_seed(JOB, 1, False), page_seed(JOB, 3, False)]
    other_job = page_seed("another-job", 1, False)
    assert other_job != first[0]

    comfy.reset()
    randomized = new_job(tmp_path / "b", prompted_book, portrait, randomize=True)
    make_backgrounds(randomized, JOB, loaded, [1, 3], "comfyui", options(comfy.url))
    seeds_1 = dict(read_job(randomized, JOB).generation_retry.seeds)
    update_job(randomized, JOB, lambda record: draw_seeds(record, [1, 3]))  # regenerate again
    make_backgrounds(randomized, JOB, loaded, [1, 3], "comfyui", options(comfy.url))
    seeds_2 = read_job(randomized, JOB).generation_retry.seeds
    sent = [by_title(p["prompt"])["sampler"]["seed"] for p in comfy.received.prompts]
    assert sent == [seeds_1["1"], seeds_1["3"], seeds_2["1"], seeds_2["3"]]
    assert seeds_1 != seeds_2 and first != [seeds_1["1"], seeds_1["3"]]
    # and the recorded seed is what made the page: a re-run with the other seed differs
    assert len({seeds_1["1"], seeds_2["1"], first[0]}) == 3


def test_classic_backend_records_seeds_and_ignores_them(prompted_book, portrait, tmp_path):
    loaded = load_book(str(prompted_book))
    a = new_job(tmp_path / "a", prompted_book, portrait)
    b = new_job(tmp_path / "b", prompted_book, portrait, randomize=True)
    made_a = make_backgrounds(a, JOB, loaded, [1, 3], "classic")
    made_b = make_backgrounds(b, JOB, loaded, [1, 3], "classic")
    assert [m.sha256 for m in made_a] == [m.sha256 for m in made_b]
    assert read_job(a, JOB).generation_retry.seeds == {"1": page_seed(JOB, 1, False),
                                                       "3": page_seed(JOB, 3, False)}
    assert set(read_job(b, JOB).generation_retry.seeds) == {"1", "3"}
    assert read_job(b, JOB).generation_retry.seeds != read_job(a, JOB).generation_retry.seeds


# ---- error mapping ----------------------------------------------------------------------


def transfer(url: str, **kw) -> ComfyUIFaceTransfer:
    photo = load_photo((Path(__file__).parents[1] / "pipeline/demo/photo.jpg").read_bytes())
    return ComfyUIFaceTransfer(photo, analyze_heuristic(photo, "girl"), url=url, job_id=JOB,
                               **{"timeout_s": 10, **kw})


def one_page(backend: ComfyUIFaceTransfer, seed: int = 7) -> np.ndarray:
    from steps.backends.base import FaceRequest

    page = np.full((300, 400, 3), 180, np.uint8)
    try:
        return backend(page, FaceRequest(5, ((170, 120), (230, 120)), "a prompt", "a negative", seed))
    finally:
        backend.close()


def broken_workflow(tmp_path: Path, change) -> str:
    graph = load_workflow()
    change(graph)
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(graph))
    return str(path)


def test_a_graph_comfyui_rejects_is_the_operators_problem(comfy, tmp_path):
    """A rejected graph is bookjob's or the operator's workflow, never the book: SetupError
    (exit 1), one line naming the node and what to fix (comfyui_errors.py argues why)."""
    sampler = node_ids(load_workflow())["sampler"]
    missing = broken_workflow(tmp_path, lambda g: g[sampler]["inputs"].pop("steps"))
    with pytest.raises(SetupError) as caught:
        one_page(transfer(comfy.url, workflow=missing))
    text = str(caught.value)
    assert f"node {sampler} (KSampler) Required input is missing: steps" in text
    assert f"rejected the face-transfer workflow {missing}" in text and "BOOKJOB_COMFYUI_WORKFLOW" in text
    assert "\n" not in text and comfy.received.prompts == []

    unknown = broken_workflow(tmp_path, lambda g: g[sampler].update(class_type="KSamplerTurbo"))
    with pytest.raises(SetupError, match="Cannot execute because node KSamplerTurbo does not exist.*'#15'"):
        one_page(transfer(comfy.url, workflow=unknown))

    wrong_case = broken_workflow(tmp_path, lambda g: g["6"]["inputs"].update(provider="cuda"))
    with pytest.raises(SetupError, match=r"node 6 \(IPAdapterUnifiedLoaderFaceID\) Value not in list: "
                                         r"provider: 'cuda' not in \['CPU', 'CUDA'"):
        one_page(transfer(comfy.url, workflow=wrong_case))


def test_a_model_the_server_lacks_names_the_file_for_the_operator(comfy):
    comfy.object_info["ControlNetLoader"]["input"]["required"]["control_net_name"][0] = []
    with pytest.raises(SetupError) as caught:
        one_page(transfer(comfy.url))
    text = str(caught.value)
    assert text.startswith(f"ComfyUI at {comfy.url} has no model 'control_v11p_sd15_canny.pth' for "
                           "control_net_name of node 10 (ControlNetLoader)")
    assert "/models/comfyui" in text and "face slot" not in text


def test_an_upload_the_server_lost_is_a_setup_problem(comfy, monkeypatch):
    """The upload answered, but the prompt reached a server without the file (several replicas)."""
    original = ComfyUIClient.upload_image

    def lost(self, name, png, subfolder="bookjob"):
        ref = original(self, name, png, subfolder)
        comfy.files.pop(("input", subfolder, name))
        return ref

    monkeypatch.setattr(ComfyUIClient, "upload_image", lost)
    with pytest.raises(SetupError, match="does not find an image bookjob has just uploaded .*Invalid image "
                                         f"file: bookjob/{JOB}-"):
        one_page(transfer(comfy.url))


def test_a_workflow_without_the_named_inputs_is_refused_before_any_request(comfy, tmp_path):
    seedless = broken_workflow(tmp_path, lambda g: g[node_ids(g)["sampler"]]["inputs"].pop("seed"))
    with pytest.raises(SetupError, match="has no input 'seed'"):
        transfer(comfy.url, workflow=seedless)
    assert comfy.received.system_stats == 0


# What the real server sends (tests/data/comfyui/README.md, observed on ComfyUI 0.3.64
# a125cd84b054a57729b5eecab930ca9408719832 with ComfyUI_IPAdapter_plus 9d076a3df0d2763cef5510ec5ab807f6632c39f5).
# execution.py (execute) formats exception_message as "{error}\n{tips}" -- the OOM tips below are
# its text -- and exception_type as module.Qualname (full_type_name); IPAdapterPlus.py / utils.py
# raise the bare Exceptions ("... model not found.", "InsightFace: No face detected.", and
# insightface's ImportError re-raised as Exception(e)).
OOM_TIPS = ("This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before "
            "you might have accidentally set the batch_size to a large number.")
SERVER_SAYS = {
    "corrupt-checkpoint": ("CheckpointLoaderSimple", "safetensors._safetensors_rust.SafetensorError",
                           "Error while deserializing header: header too small\n", SetupError),
    "no-clip-vision": ("IPAdapterUnifiedLoaderFaceID", "Exception", "ClipVision model not found.\n", SetupError),
    "no-ipadapter": ("IPAdapterUnifiedLoaderFaceID", "Exception", "IPAdapter model not found.\n", SetupError),
    "no-lora": ("IPAdapterUnifiedLoaderFaceID", "Exception", "LoRA model not found.\n", SetupError),
    "no-insightface": ("IPAdapterUnifiedLoaderFaceID", "Exception", "No module named 'insightface'\n", SetupError),
    # mentions CUDA, and is no passing moment: a CPU-only torch in a GPU image
    "cpu-torch": ("KSampler", "AssertionError", "Torch not compiled with CUDA enabled\n", SetupError),
    "cuda-oom": ("KSampler", "torch.OutOfMemoryError",
                 "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.55 GiB "
                 "of which 1.06 GiB is free.\n" + OOM_TIPS, ComfyUIError),
    "cuda-oom-runtime": ("KSampler", "RuntimeError", "CUDA error: out of memory\n", ComfyUIError),
    "no-face": ("IPAdapterFaceID", "Exception", "InsightFace: No face detected.\n", InputError),
    "unreadable": ("LoadImage", "PIL.UnidentifiedImageError",
                   "cannot identify image file '/tmp/comfyui/input/bookjob/cf-1-child.png'\n", InputError),
    "unknown": ("KSampler", "ValueError", "mask and image sizes differ\n", ComfyUIError),
}


@pytest.mark.parametrize("case", SERVER_SAYS)
def test_execution_errors_are_classified_by_what_the_server_sends(comfy, case):
    node_type, exception_type, message, expected = SERVER_SAYS[case]
    comfy.fail_at = node_type
    comfy.execution_error = {"exception_type": exception_type, "exception_message": message}
    with pytest.raises(expected) as caught:
        one_page(transfer(comfy.url))
    error = caught.value
    assert type(error) is expected or (expected is ComfyUIError and isinstance(error, ComfyUIError))
    text = error.message if isinstance(error, InputError) else str(error)
    assert "\n" not in text and "TIPS" not in text and "face slot" not in text
    if expected is SetupError:
        nid = node_ids(load_workflow()).get("sampler") if node_type == "KSampler" else None
        assert text.startswith(f"ComfyUI at {comfy.url} cannot run the face transfer: node ")
        assert f"({node_type}) failed with " in text and message.strip() in text
        assert nid is None or f"node {nid} " in text
    elif expected is ComfyUIError:
        assert message.split("\n")[0] in text
    else:
        assert error.reason in ("comfyui_no_face", "comfyui_unreadable_image")


def test_an_error_read_from_the_history_is_classified_the_same(comfy):
    comfy.drop_socket = True  # the client falls back to /history's status messages
    comfy.fail_at = "CheckpointLoaderSimple"
    comfy.execution_error = {"exception_type": "safetensors._safetensors_rust.SafetensorError",
                             "exception_message": "Error while deserializing header: header too small\n"}
    with pytest.raises(SetupError, match=r"node 1 \(CheckpointLoaderSimple\) failed with safetensors"
                                         r"\._safetensors_rust\.SafetensorError: Error while deserializing "
                                         r"header: header too small; fix"):
        one_page(transfer(comfy.url))


@pytest.mark.parametrize("socket", ["websocket", "history"])
def test_an_interrupted_run_is_transient(comfy, socket):
    comfy.interrupt = True
    comfy.drop_socket = socket == "history"
    with pytest.raises(ComfyUIError, match=r"interrupted the face on page 5 at node 15 \(KSampler\)") as caught:
        one_page(transfer(comfy.url))
    assert not isinstance(caught.value, (InputError, SetupError))


def test_a_face_slot_outside_the_page_is_bad_input_before_any_upload(comfy):
    from steps.backends.base import FaceRequest

    backend = transfer(comfy.url)
    try:
        with pytest.raises(InputError) as caught:
            backend(np.full((300, 400, 3), 180, np.uint8), FaceRequest(5, ((170, 120), (400, 120)), "p", "n", 1))
        assert caught.value.reason == "face_slot_outside_page"
        assert "eye [400, 120] is outside its 400x300 image" in caught.value.message
        assert comfy.received.uploads == []
        # the last pixel inside is fine
        backend(np.full((300, 400, 3), 180, np.uint8), FaceRequest(5, ((170, 120), (399, 120)), "p", "n", 1))
    finally:
        backend.close()


def test_server_errors_and_refused_connections_are_transient(comfy):
    comfy.prompt_status = 500
    with pytest.raises(ComfyUIError, match="HTTP 500"):
        one_page(transfer(comfy.url))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(ComfyUIError, match="unreachable"):
        transfer(closed)
    assert time.monotonic() - started < 5


def test_a_run_that_never_ends_times_out_and_is_cancelled(comfy):
    comfy.hang = True
    started = time.monotonic()
    with pytest.raises(ComfyUITimeout, match="within 0.6 s"):
        one_page(transfer(comfy.url, timeout_s=0.6))
    assert time.monotonic() - started < 5
    prompt_id = comfy.received.prompts[0]["prompt_id"]
    assert {"queue": {"delete": [prompt_id]}} in comfy.received.cancelled
    assert {"interrupt": {"prompt_id": prompt_id}} in comfy.received.cancelled


def test_a_lost_websocket_falls_back_to_polling_history(comfy):
    comfy.drop_socket = True
    out = one_page(transfer(comfy.url))
    expected = 0.5 * 180 + 0.5 * seed_color(7)
    assert np.abs(out[140, 200].astype(int) - expected).max() <= 4
    assert len(comfy.received.ws_clients) == 1  # no reconnect storm: the history answers


def test_progress_over_a_slow_run_is_followed_to_the_end(comfy):
    comfy.step_delay_s = 0.3  # quiet spells longer than the client's poll interval
    out = one_page(transfer(comfy.url, poll_s=0.1), seed=99)
    assert np.abs(out[140, 200].astype(int) - (90 + 0.5 * seed_color(99))).max() <= 4


def test_bad_urls_are_input_errors():
    with pytest.raises(InputError, match="not an http"):
        ComfyUIClient("localhost:8188")


def test_wait_ready(comfy):
    stats = wait_ready(comfy.url, timeout_s=5)
    assert stats["devices"][0]["type"] == "cuda"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(ComfyUIError, match="not ready within 0.5 s"):
        wait_ready(closed, timeout_s=0.5, interval_s=0.1)
    assert time.monotonic() - started < 3
    done = subprocess.run([sys.executable, "-m", "steps.backends.comfyui", "wait-ready", comfy.url,
                           "--timeout", "5"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "is ready (cuda:0 double)" in done.stderr
    done = subprocess.run([sys.executable, "-m", "steps.backends.comfyui", "wait-ready", closed,
                           "--timeout", "0.3"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "not ready" in done.stderr


# ---- the step program: exit codes ----------------------------------------------------------


def backgrounds_step(store: LocalStore, book: Path, url: str, **env) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "steps.backgrounds", "--store", str(store.root), "--job-id", JOB,
         "--book", str(book), "--pages", "1,2", "--face-backend", "comfyui", "--comfyui-url", url,
         "--comfyui-timeout", "1"],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def test_step_exit_codes(comfy, prompted_book, portrait, tmp_path):
    store = new_job(tmp_path, prompted_book, portrait)
    comfy.hang = True  # transient: exit 1, the engines retry
    done = backgrounds_step(store, prompted_book, comfy.url)
    # a TransientError: one line saying what and that it is retried, no traceback
    assert done.returncode == 1 and "did not finish the face on page 1" in done.stderr
    assert "will be retried" in done.stderr and "Traceback" not in done.stderr

    comfy.reset()  # the operator's workflow does not fit the server: exit 1, one line, the book not blamed
    workflow = broken_workflow(tmp_path, lambda g: g[node_ids(g)["sampler"]]["inputs"].pop("cfg"))
    done = backgrounds_step(store, prompted_book, comfy.url, BOOKJOB_COMFYUI_WORKFLOW=workflow)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(errors) == 1 and "Required input is missing: cfg" in errors[0] and workflow in errors[0]
    assert read_job(store, JOB).status.value == "prepay_generating"  # left to on-exit, not marked bad input

    comfy.reset()  # a broken model on the server: exit 1, one clean line
    comfy.fail_at = "CheckpointLoaderSimple"
    comfy.execution_error = {"exception_type": "safetensors._safetensors_rust.SafetensorError",
                             "exception_message": "Error while deserializing header: header too small\n"}
    done = backgrounds_step(store, prompted_book, comfy.url)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 1 and len(errors) == 1 and errors[0].endswith(
        "or install what its image lacks."), done.stderr
    assert "will be retried" not in errors[0] and "face slot" not in errors[0]

    comfy.reset()  # the child's photo has no face the server's face model finds: exit 3, marked
    comfy.fail_at = "IPAdapterFaceID"
    comfy.execution_error = {"exception_type": "Exception", "exception_message": "InsightFace: No face detected.\n"}
    done = backgrounds_step(store, prompted_book, comfy.url)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    record = read_job(store, JOB)
    assert record.status.value == "generation_failed"
    assert record.error.step == "backgrounds" and record.error.reason == "comfyui_no_face"


# ---- a book through the CLI with both production backends ---------------------------------


@pytest.mark.slow
def test_bookjob_run_with_the_production_backends(comfy, tiny_qwen, prompted_book, portrait, tmp_path):
    store = tmp_path / "store"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(prompted_book), "--photo", str(portrait),
         "--name", "Mia", "--age", "5", "--gender", "girl", "--job-id", "prod-1", "--stage", "full",
         "--store", str(store), "--analyzer", "qwen2-vl", "--analyzer-model", str(tiny_qwen),
         "--face-backend", "comfyui", "--comfyui-url", comfy.url, "--json"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr + done.stdout
    record = json.loads(done.stdout)
    assert record["status"] == "completed"
    # the random tiny model answers garbage: the analysis fell back, and says so
    analysis = record["analysis"]
    assert analysis["source"] == "heuristic-fallback" and analysis["analyzer_model"] == str(tiny_qwen)
    assert len(analysis["warnings"]) == 3 and analysis["face_box"]
    # both face pages went through ComfyUI with their recorded seeds, one connection per chunk
    seeds = record["analysis"]["generation_retry"]["seeds"]
    assert set(seeds) == {"1", "3"}
    sent = {by_title(p["prompt"])["base_image"]["image"]: by_title(p["prompt"])["sampler"]["seed"]
            for p in comfy.received.prompts}
    assert sent == {"bookjob/prod-1-p01-base.png": seeds["1"], "bookjob/prod-1-p03-base.png": seeds["3"]}
    assert len(comfy.received.ws_clients) == 2  # prepay chunk and postpay chunk
    pages = sorted(a["page"] for a in record["artifacts"] if a["kind"] == "page_png")
    assert pages == [1, 2, 3, 4]
    bg = np.asarray(Image.open(store / "layout/prod-1/pages/page_01_bg.png").convert("RGB"), dtype=int)
    loaded = load_book(str(prompted_book))
    page = loaded.book.page(1)
    region = slot_region(loaded.book.output.page_size_px, (page.face.left_eye, page.face.right_eye))
    cx, cy = (round(v) for v in region.center)
    base = np.asarray(load_page(loaded.read(page.base), loaded.book.output.page_size_px), dtype=int)
    assert np.abs(bg[cy, cx] - (0.5 * base[cy, cx] + 0.5 * seed_color(seeds["1"]))).max() <= 4
