"""Pages ahead (one machine): the render step goes while the chunk's backgrounds step is still
making pages, and takes each page once that step's stderr says it is stored; the engine's
go-file then says ``done`` (every page is there) or ``stop`` (the backgrounds step failed)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from steps.protocol import PagesAhead, progress_line, say
from tests.helpers import CHILD_ARGS, DEMO_PHOTO, ROOT


@pytest.fixture
def files(tmp_path):
    after, go = tmp_path / "backgrounds.err", tmp_path / "go"
    say(go, "go", ["--pages", "1,2,3"])
    return after, go


def ahead(after, go, parent=None) -> PagesAhead:
    return PagesAhead(str(after), str(go), os.getppid() if parent is None else parent, poll_s=0.001)


def later(seconds: float, do) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), do()), daemon=True)
    thread.start()
    return thread


def test_a_page_is_taken_once_its_progress_line_is_whole(files):
    after, go = files
    after.write_text("some log line\n" + progress_line("backgrounds", 2, 1, 3) + "\n"
                     + progress_line("backgrounds", 3, 2, 3)[:20])       # half a line
    pages = ahead(after, go)
    assert pages.wait(2)
    assert pages.finished == {2}
    with open(after, "a") as f:
        f.write(progress_line("backgrounds", 3, 2, 3)[20:] + "\n")
    assert pages.wait(3) and pages.finished == {2, 3}


def test_it_waits_for_a_page_that_is_not_there_yet(files):
    after, go = files
    after.write_text("")
    writer = later(0.2, lambda: after.write_text(progress_line("backgrounds", 1, 1, 3) + "\n"))
    start = time.monotonic()
    assert ahead(after, go).wait(1)
    assert time.monotonic() - start >= 0.2
    writer.join()


def test_done_lets_every_page_through_even_when_the_stderr_is_gone(files):
    after, go = files                          # the engine removes a finished step's stderr
    pages = ahead(after, go)
    later(0.1, lambda: say(go, "done", ["--pages", "1,2,3"]))
    assert pages.wait(1) and pages.wait(3)
    assert pages.finished == set()


@pytest.mark.parametrize("word", ["stop", "something else"])
def test_stop_or_any_other_word_ends_the_wait(files, word):
    after, go = files
    after.write_text(progress_line("backgrounds", 1, 1, 3) + "\n")
    pages = ahead(after, go)
    later(0.1, lambda: say(go, word))
    assert pages.wait(1)                       # finished before the stop: still taken
    assert not pages.wait(2)


def test_an_engine_that_is_gone_ends_the_wait(files):
    after, go = files
    assert not ahead(after, go, parent=os.getppid() + 100000).wait(1)   # orphaned
    go.unlink()
    assert not ahead(after, go).wait(1)        # the engine's scratch folder was removed


def test_lines_that_are_not_page_progress_are_passed_over(files):
    after, go = files
    after.write_text("bookjob-progress {not json\nbookjob-progress [1]\n"
                     'bookjob-progress {"step": "backgrounds", "page": "2"}\n'
                     + progress_line("backgrounds", 3, 1, 3) + "\n")
    pages = ahead(after, go)
    assert pages.wait(3) and pages.finished == {3}


def test_a_step_that_hears_done_before_it_read_go_still_goes(files):
    """A chunk of reused pages may be done before the render step finished warming up."""
    from steps.protocol import go_arguments, wait_for_go

    after, go = files
    say(go, "done", ["--pages", "1,2,3", "--after", str(after)])
    assert wait_for_go(str(go), os.getppid())
    assert go_arguments(str(go)) == ["--pages", "1,2,3", "--after", str(after)]
    say(go, "stop")
    assert not wait_for_go(str(go), os.getppid())


@pytest.mark.slow
@pytest.mark.parametrize("ahead_on", [True, False])
def test_a_job_makes_the_same_pages_with_or_without_pages_ahead(small_book, prepay_reference,
                                                                 tmp_path, ahead_on):
    """The reference job ran with pages ahead (the default); BOOKJOB_PAGES_AHEAD=false makes
    the render step wait for its whole chunk. The bytes are the same either way."""
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BOOKJOB_PAGES_AHEAD": str(ahead_on).lower()}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(small_book), "--photo",
                           str(DEMO_PHOTO), *CHILD_ARGS, "--job-id", "ref", "--store", str(store)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    layout = store / "layout" / "ref"
    made = {p.relative_to(layout).as_posix(): p.read_bytes()
            for p in sorted(layout.rglob("*")) if p.is_file() and not p.name.startswith(".")}
    assert made == prepay_reference["outputs"]
    [log] = list((store / "jobs/ref/logs").glob("*/prepay-render*"))
    assert ("render: pages ahead" in log.read_text()) is ahead_on


@pytest.mark.slow
def test_with_a_browser_up_the_text_of_pages_to_come_is_set_before_their_backgrounds(
        small_book, prepay_reference, tmp_path):
    """The text layer needs no background: while the render step waits for page 1's, the warm
    browser already sets the text of pages 1 and 2 (a batch is up to TEXT_AHEAD pages), in one
    document; the pages are the same."""
    import json
    import shutil

    from steps.backends.typesetter import TextRenderer
    from steps.core.manifest import load_book
    from steps.core.store import LocalStore
    from steps.render import TEXT_AHEAD, book_fonts, render_pages

    assert TEXT_AHEAD == 3
    root = tmp_path / "store"
    shutil.copytree(prepay_reference["root"], root)
    record = json.loads((root / "jobs/ref/job.json").read_text())
    record["artifacts"] = [a for a in record["artifacts"] if a["kind"] != "page_png"]
    (root / "jobs/ref/job.json").write_text(json.dumps(record))
    loaded = load_book(str(small_book))
    warm = TextRenderer(book_fonts(loaded)).__enter__()
    seen = []

    def ready(num: int) -> bool:
        deadline = time.monotonic() + 30
        while num == 1 and warm._pages_loaded < 1:    # pages 1 and 2, before page 1's background
            assert time.monotonic() < deadline, "no text was set ahead of the backgrounds"
            time.sleep(0.01)
        seen.append((num, warm._pages_loaded))
        return True

    try:
        made = render_pages(LocalStore(root), "ref", loaded, [1, 2], warm, ready=ready)
    finally:
        warm.close()
    assert seen == [(1, 1), (2, 1)] and [a.page for a in made] == [1, 2]  # one layout for both
    for n in (1, 2):
        assert (root / f"layout/ref/pages/page_0{n}.png").read_bytes() == \
            prepay_reference["outputs"][f"pages/page_0{n}.png"]
