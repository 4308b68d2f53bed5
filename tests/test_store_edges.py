"""The stores at their edges: every key the design names, listings (partial prefixes, other jobs,
hidden files), compare-and-swap from each side, and the local store's temporary files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from steps.core import faults
from steps.core.store import (
    LocalStore,
    S3Store,
    _alive,
    analysis_key,
    book_key,
    job_key,
    log_key,
    open_store,
    pages_prefix,
    preview_key,
)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return S3Store(f"s3://{request.getfixturevalue('bucket')}/some/prefix")


def test_every_key_of_the_design():
    assert job_key("j1") == "jobs/j1/job.json"
    assert analysis_key("j1") == "jobs/j1/analysis.json"
    assert log_key("j1", "render-0") == "jobs/j1/logs/render-0.log"
    assert pages_prefix("j1") == "layout/j1/pages/"
    assert preview_key("j1") == "layout/j1/preview.pdf"
    assert book_key("j1") == "layout/j1/book.pdf"


def test_listing_by_a_partial_prefix_is_a_string_prefix(store, tmp_path):
    (tmp_path / "beside-the-store.txt").write_text("not a key")
    for key in ("layout/j/pages/page_01.png", "layout/j/pages/page_02_bg.png", "layout/j/pages/page_10.png",
                "layout/j/preview.pdf", "layout/jk/pages/page_01.png", "jobs/j/job.json"):
        store.write(key, key.encode())
    assert store.list("layout/j/pages/page_0") == ["layout/j/pages/page_01.png",
                                                   "layout/j/pages/page_02_bg.png"]
    assert store.list("layout/j/") == ["layout/j/pages/page_01.png", "layout/j/pages/page_02_bg.png",
                                       "layout/j/pages/page_10.png", "layout/j/preview.pdf"]
    assert store.list("layout/j") == store.list("layout/j/") + ["layout/jk/pages/page_01.png"]
    assert store.list("layout/x/") == [] and store.list("nothing/at/all/") == []
    assert store.list("") == sorted(store.list("layout/") + ["jobs/j/job.json"])


def test_a_folder_is_not_an_object(store):
    store.write("a/b/c.png", b"c")
    assert store.exists("a/b/c.png") and not store.exists("a/b")


@pytest.mark.parametrize("version", [None, "an old version"])
def test_compare_and_swap_on_an_absent_object(store, version):
    assert store.read_versioned("jobs/j/job.json") is None
    assert store.write_if("jobs/j/job.json", b"v1", version) is (version is None)
    assert store.read_versioned("jobs/j/job.json") == ((b"v1", store.read_versioned("jobs/j/job.json")[1])
                                                       if version is None else None)


def test_versions_follow_the_content(store):
    store.write("jobs/j/job.json", b"one")
    _, first = store.read_versioned("jobs/j/job.json")
    store.write("jobs/j/job.json", b"two")
    data, second = store.read_versioned("jobs/j/job.json")
    assert data == b"two" and first != second
    assert not store.write_if("jobs/j/job.json", b"three", first)
    assert store.write_if("jobs/j/job.json", b"three", second)
    assert store.read_text("jobs/j/job.json") == "three"


def test_text_is_utf8(store):
    store.write("jobs/j/note.txt", "Олена 🌲".encode())
    assert store.read_text("jobs/j/note.txt") == "Олена 🌲"


# ---- the local folder --------------------------------------------------------------------

def test_the_local_version_is_the_sha256_of_the_bytes(tmp_path):
    store = LocalStore(tmp_path)
    store.write("k/a.json", b"{}")
    assert store.read_versioned("k/a.json") == (b"{}", hashlib.sha256(b"{}").hexdigest())


def test_local_listings_hide_dot_files(tmp_path):
    store = LocalStore(tmp_path)
    store.write_if("jobs/j/job.json", b"v1", None)          # leaves .job.json.lock beside it
    (tmp_path / "jobs/j/.job.json.abc.tmp").write_bytes(b"half")
    (tmp_path / "jobs/j/.hidden").mkdir()
    (tmp_path / "jobs/j/.hidden/x.txt").write_bytes(b"in a hidden folder")
    assert (tmp_path / "jobs/j/.job.json.lock").exists()
    # a key with any part starting with a dot is hidden (a dot folder too: .bookjob-tmp)
    assert store.list("jobs/j/") == ["jobs/j/job.json"]
    assert store.list("jobs/j/.") == []
    assert store.list("") == ["jobs/j/job.json"]


def test_the_local_store_is_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = open_store("relative/store")
    assert isinstance(store, LocalStore)
    assert store.root == tmp_path / "relative" / "store" and store.uri == str(store.root)
    assert store.path("a/b.png") == tmp_path / "relative/store/a/b.png"
    store.write("a/b.png", b"x")
    assert (tmp_path / "relative/store/a/b.png").read_bytes() == b"x"
    assert isinstance(open_store(tmp_path), LocalStore)


def test_the_temporary_file_is_complete_and_in_the_stores_scratch_folder(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    store.write("a/b.png", b"old")
    seen = []
    scratch = tmp_path / LocalStore.TMP

    def at_point(name):
        temporary = sorted(p.name for p in scratch.iterdir())
        seen.append((name, temporary, (scratch / temporary[0]).read_bytes(),
                     (tmp_path / "a/b.png").read_bytes(), os.listdir(tmp_path / "a")))

    monkeypatch.setattr(faults, "point", at_point)
    store.write("a/b.png", b"new bytes")
    [(name, temporary, content, target, beside)] = seen
    assert name == "write"
    # named after the writing process, so a later writer can tell an orphan from a live write
    assert len(temporary) == 1 and temporary[0].startswith(f"{os.getpid()}-") and temporary[0].endswith(".tmp")
    assert content == b"new bytes" and target == b"old"    # complete, not yet in place
    assert beside == ["b.png"]                             # nothing beside the target
    assert os.listdir(tmp_path / "a") == ["b.png"] and os.listdir(scratch) == []
    assert store.read("a/b.png") == b"new bytes"


@pytest.mark.parametrize("existing", [True, False])
def test_a_failed_write_leaves_the_old_object_and_no_temporary_file(tmp_path, monkeypatch, existing):
    store = LocalStore(tmp_path)
    if existing:
        store.write("a/b.png", b"old")
    else:
        (tmp_path / "a").mkdir()

    def fail(name):
        raise OSError("disk full")

    monkeypatch.setattr(faults, "point", fail)
    with pytest.raises(OSError, match="disk full"):
        store.write("a/b.png", b"new")
    assert os.listdir(tmp_path / "a") == (["b.png"] if existing else [])
    if existing:
        assert store.read("a/b.png") == b"old"


def test_the_compare_and_swap_lock_sits_beside_the_record(tmp_path):
    store = LocalStore(tmp_path)
    assert store.write_if("jobs/j/job.json", b"v1", None)
    assert sorted(os.listdir(tmp_path / "jobs/j")) == [".job.json.lock", "job.json"]


UNSAFE = ["../etc/passwd", "/abs", "a/../../b", "", "..", "a/..", ".", "./a", "a/./b", "a//b",
          "a/", "/"]


@pytest.mark.parametrize("key", UNSAFE)
def test_unsafe_keys_are_refused_everywhere(tmp_path, key):
    store = LocalStore(tmp_path / "store")
    for use in (store.read, store.exists, lambda k: store.write(k, b"x"),
                lambda k: store.write_if(k, b"x", None), store.read_versioned):
        with pytest.raises(ValueError, match="unsafe store key"):
            use(key)
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


@pytest.mark.parametrize("key", UNSAFE)
def test_unsafe_keys_are_refused_on_s3_alike(bucket, key):
    """S3 would take "a//b" and "a/./b" as keys of their own; the local store would fold them
    into "a/b": both refuse them, so a key means the same object in both."""
    import boto3

    store = S3Store(f"s3://{bucket}/p")
    for use in (store.read, store.exists, lambda k: store.write(k, b"x"),
                lambda k: store.write_if(k, b"x", None), store.read_versioned):
        with pytest.raises(ValueError, match="unsafe store key"):
            use(key)
    assert boto3.client("s3").list_objects_v2(Bucket=bucket).get("KeyCount") == 0


@pytest.mark.parametrize("key", [".hidden", "a/.b", "a..b", "...", "a/b.c/d", "Ünïcode/ключ"])
def test_keys_with_dots_inside_a_part_are_keys(tmp_path, key):
    store = LocalStore(tmp_path)
    store.write(key, b"x")
    assert store.read(key) == b"x" and store.path(key) == tmp_path / key


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_first_write_of_a_store_removes_the_orphans_of_dead_writers(tmp_path):
    scratch = tmp_path / LocalStore.TMP
    scratch.mkdir()
    dead, alive = dead_pid(), os.getpid()
    names = [f"{dead}-a.tmp", f"{dead}-b-c.tmp", f"{alive}-d.tmp", "1-e.tmp", "notes-f.tmp", "g.tmp",
             f"x{dead}-h.tmp"]
    for name in names:
        (scratch / name).write_bytes(b"half")
    store = LocalStore(tmp_path)
    assert sorted(os.listdir(scratch)) == sorted(names)    # a store alone touches nothing
    store.write("a.png", b"x")
    # pid 1 is alive (whether this process may signal it or not); other names are not ours
    assert sorted(os.listdir(scratch)) == sorted(names[2:])
    (scratch / f"{dead}-g.tmp").write_bytes(b"half")
    store.write("b.png", b"x")                              # once per store: not again
    assert f"{dead}-g.tmp" in os.listdir(scratch)
    LocalStore(tmp_path).write("c.png", b"x")               # a new store (a new step) sweeps
    assert f"{dead}-g.tmp" not in os.listdir(scratch)


def test_a_process_is_alive_until_it_is_gone():
    # signals at their defaults (a run under nohup would pass on an ignored SIGHUP)
    waits = ("import signal, time; signal.signal(signal.SIGHUP, signal.SIG_DFL); "
             "print(flush=True); time.sleep(30)")
    with subprocess.Popen([sys.executable, "-c", waits], stdout=subprocess.PIPE) as child:
        child.stdout.readline()
        assert _alive(child.pid)
        with pytest.raises(subprocess.TimeoutExpired):  # asked (signal 0), not signalled
            child.wait(timeout=0.3)
        child.kill()
    assert _alive(1)
    assert not _alive(dead_pid())


def test_a_process_this_one_may_not_signal_is_alive():
    child = os.fork()
    if child == 0:                                      # as nobody, pid 1 answers EPERM
        code = 2
        try:
            if os.getuid() == 0:
                os.setuid(65534)
            code = 0 if _alive(1) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
