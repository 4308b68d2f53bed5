"""Both stores: same keys, atomic writes, compare-and-swap (local folder and S3 over HTTP)."""

from __future__ import annotations

import pytest

from steps.core.store import LocalStore, S3Store, open_store, page_bg_key, page_key, upload_key


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return S3Store(f"s3://{request.getfixturevalue('bucket')}/some/prefix")


def test_keys_follow_the_design():
    assert page_bg_key("j1", 5) == "layout/j1/pages/page_05_bg.png"
    assert page_key("j1", 12) == "layout/j1/pages/page_12.png"
    assert upload_key("j1", "jpg") == "uploads/j1/photo.jpg"


def test_read_write_list(store):
    store.write("layout/j/pages/page_01.png", b"one")
    store.write("layout/j/pages/page_02.png", b"two")
    store.write("layout/k/pages/page_01.png", b"other job")
    assert store.read("layout/j/pages/page_02.png") == b"two"
    assert store.list("layout/j/pages/") == ["layout/j/pages/page_01.png", "layout/j/pages/page_02.png"]
    assert store.exists("layout/j/pages/page_01.png")
    assert not store.exists("layout/j/pages/page_03.png")
    with pytest.raises(FileNotFoundError):
        store.read("nothing/here")


def test_compare_and_swap(store):
    assert store.write_if("jobs/j/job.json", b"v1", None)
    assert not store.write_if("jobs/j/job.json", b"again", None)
    data, version = store.read_versioned("jobs/j/job.json")
    assert data == b"v1"
    assert store.write_if("jobs/j/job.json", b"v2", version)
    assert not store.write_if("jobs/j/job.json", b"v3", version)  # stale version
    assert store.read("jobs/j/job.json") == b"v2"


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", ""])
def test_unsafe_keys_are_refused(tmp_path, key):
    with pytest.raises(ValueError):
        LocalStore(tmp_path).write(key, b"x")


def test_local_write_leaves_no_temporary_files(tmp_path):
    store = LocalStore(tmp_path)
    store.write("a/b.png", b"x" * 1000)
    store.write("a/b.png", b"y")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.png"]


def test_open_store():
    assert isinstance(open_store("/tmp/x"), LocalStore)
    with pytest.raises(ValueError):
        open_store("ftp://nope")
