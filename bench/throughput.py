"""Orders per minute on one machine: a `bookjob worker` fed by BookJobs, against the same
orders run one after the other with `bookjob run`, in the same run.

``python -m bench.throughput [ORDERS]`` (and ``make bench``, section ``throughput``; ORDERS
from ``BENCH_ORDERS``, default 100): ORDERS prepay orders of the demo book arrive within a
second through ``BookJobs`` to a worker with its default slots; then the same orders, as new
jobs, run one after the other with ``bookjob run``. It reports both rates, their ratio (goal
≥ 4), failures, the peak memory (PSS) of the worker and its children, and the most browsers
that ran at once per slot (goal ≤ 2).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "pipeline" / "demo"
GOAL_RATIO = 4.0
BROWSER_NAMES = {"chromium", "chrome", "chromium-browser", "google-chrome", "headless_shell"}


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def pss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def browsers(pids: list[int]) -> int:
    """Browsers running (a Chromium main process: not one of its --type= helpers)."""
    count = 0
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        name = Path(cmdline[0].decode(errors="replace")).name if cmdline else ""
        if name in BROWSER_NAMES and not any(a.startswith(b"--type=") for a in cmdline):
            count += 1
    return count


def by_worker(orders: int, scratch: Path) -> dict:
    from pipeline.api import BookJobs
    from pipeline.worker import default_slots

    store = scratch / "worker-store"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker", "--store",
                               str(store), "--port", "0"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    slots = default_slots()
    peak = {"pss_mib": 0.0, "browsers": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            pids = tree(worker.pid)
            peak["pss_mib"] = max(peak["pss_mib"], pss_mib(pids))
            peak["browsers"] = max(peak["browsers"], browsers(pids))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(2)                       # the worker up (its fork server warm), as in a shop
    jobs = BookJobs(str(store))
    started = time.perf_counter()
    ids = [f"order-{n:03d}" for n in range(orders)]
    for job_id in ids:
        jobs.generate(job_id, "prepay", book=str(DEMO / "book"), photo=str(DEMO / "photo.jpg"),
                      name="Mia", age=6, gender="girl")
    arrived = time.perf_counter() - started
    states = [jobs.wait(job_id, timeout=3600, poll_s=0.2) for job_id in ids]
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    worker.send_signal(signal.SIGTERM)
    worker.wait(120)
    failures = sum(s.status != "prepay_ready" for s in states)
    return {"orders": orders, "slots": slots, "arrived_within_s": round(arrived, 2),
            "wall_s": round(wall, 1), "orders_per_min": round(60 * orders / wall, 1),
            "failures": failures, "peak_pss_mib": round(peak["pss_mib"]),
            "peak_browsers_per_slot": round(peak["browsers"] / slots, 2)}


def one_after_the_other(orders: int, scratch: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    failures = 0
    for n in range(orders):
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(DEMO / "book"),
                               "--photo", str(DEMO / "photo.jpg"), "--name", "Mia", "--age", "6",
                               "--gender", "girl", "--job-id", f"solo-{n:03d}", "--store",
                               str(scratch / "solo-store")], capture_output=True, env=env)
        failures += done.returncode != 0
    wall = time.perf_counter() - started
    return {"orders": orders, "wall_s": round(wall, 1),
            "orders_per_min": round(60 * orders / wall, 1), "failures": failures}


def main(orders: int = 100) -> dict:
    with tempfile.TemporaryDirectory(prefix="bookjob-throughput-") as scratch:
        worker = by_worker(orders, Path(scratch))
        solo = one_after_the_other(orders, Path(scratch))
    ratio = worker["orders_per_min"] / solo["orders_per_min"]
    return {"worker": worker, "bookjob_run_one_after_the_other": solo,
            "ratio": round(ratio, 2), "goal_ratio": GOAL_RATIO}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100), indent=2))
