"""steps.on_exit reads ``{{workflow.failures}}`` in the exact form the controller passes it
(``workflow/controller/operator.go``: json.Marshal of the Failed/Error nodes, then
strconv.Quote; Go map order; DAG, Retry and workflow nodes included; "null" for none), and
marks the job with the failing step and its exit code — never crashing on odd input."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from argparse import Namespace

import pytest

from steps import on_exit
from steps.core.job import JobError, JobRecord, Status
from steps.core.records import create_job, read_job, update_job
from steps.core.store import LocalStore, job_key
from steps.on_exit import decode_failures, first_failure
from tests.harness.expr import go_quote, workflow_failures
from tests.helpers import ROOT

POD = {"displayName": "backgrounds(2)", "message": "Error (exit code 137)",
       "templateName": "backgrounds", "phase": "Failed", "podName": "wf-backgrounds-1",
       "finishedAt": "2026-01-01T10:05:00Z"}
EARLIER = {**POD, "displayName": "backgrounds(0)", "finishedAt": "2026-01-01T10:01:00Z",
           "message": "Error (exit code 1)"}
RETRY = {**POD, "displayName": "backgrounds", "message": "No more retries left",
         "finishedAt": "2026-01-01T10:05:01Z"}
DAG = {**POD, "displayName": "prepay", "templateName": "prepay-pass", "message": "",
       "finishedAt": "2026-01-01T10:05:02Z"}
ROOT_NODE = {**DAG, "displayName": "book-job-x", "templateName": "main"}


@pytest.mark.parametrize("order", list(itertools.permutations([POD, RETRY, DAG, ROOT_NODE])))
def test_the_pod_node_is_found_in_any_order(order):
    node = first_failure(workflow_failures(list(order)))
    assert node["templateName"] == "backgrounds" and "exit code 137" in node["message"]


def test_the_earliest_failed_pod_explains_the_failure():
    assert first_failure(workflow_failures([POD, RETRY, EARLIER]))["displayName"] == "backgrounds(0)"


def test_v4_messages_and_messages_without_an_exit_code():
    v4 = {**POD, "message": "main: Error (exit code 3)"}
    assert first_failure(workflow_failures([RETRY, v4]))["message"] == v4["message"]
    evicted = {**POD, "message": "Pod was active on the node longer than the specified deadline"}
    assert first_failure(workflow_failures([RETRY, DAG, evicted])) == evicted
    assert first_failure(workflow_failures([DAG])) == {}   # only nodes that say nothing


def test_an_exit_code_outranks_an_earlier_message_and_a_message_a_summary():
    evicted = {**POD, "displayName": "render(0)", "message": "The node was low on memory.",
               "finishedAt": "2026-01-01T10:00:00Z"}
    assert first_failure(workflow_failures([evicted, POD])) == POD
    early_summary = {**RETRY, "finishedAt": "2026-01-01T09:00:00Z"}
    assert first_failure(workflow_failures([early_summary, evicted])) == evicted
    assert first_failure(workflow_failures([DAG, early_summary])) == early_summary  # better than none


def test_a_node_that_never_finished_comes_after_those_that_did():
    unfinished = {**POD, "displayName": "backgrounds(1)", "finishedAt": None}
    assert first_failure(workflow_failures([unfinished, POD]))["displayName"] == "backgrounds(2)"
    assert first_failure(workflow_failures([unfinished])) == unfinished


@pytest.mark.parametrize("name", ["", None, 5, ["backgrounds"]])
def test_a_node_without_a_template_name_is_passed_over(name):
    odd = {**EARLIER, "templateName": name}
    assert first_failure(workflow_failures([odd, POD])) == POD
    assert first_failure(workflow_failures([odd])) == {}


@pytest.mark.parametrize("text", ["", '"null"', "null", "garbage", '"[1, 2]"', '"{}"', "[",
                                  '"[]", "[]"', '"a" "b"', '"[{}]" + 1', '"[{}]',
                                  '"\\q"', "@/no/such/file", go_quote('[{"message": 5}]'),
                                  '"\\xff"', "[" * 5000 + "]" * 5000])
def test_odd_input_gives_no_failure(text):
    assert first_failure(text) == {}


def test_the_forms_the_argument_may_take(tmp_path):
    quoted = workflow_failures([POD])
    assert quoted.startswith('"[{\\"displayName\\"')            # what the controller passes
    assert decode_failures(quoted) == [POD]
    assert decode_failures(quoted[1:-1].replace('\\"', '"')) == [POD]   # through a shell
    held = tmp_path / "args"                                     # v3.7+: @file for long args
    held.write_text(quoted)
    assert decode_failures(f"@{held}") == [POD]
    odd = {**POD, "message": "Error (exit code 1): bad\x07\x0b\x00\x7f \u200b \U000e0001"}
    quoted = workflow_failures([odd])
    # json.Marshal writes the control characters as \u0007 (a backslash Quote doubles); Quote
    # itself writes DEL, U+200B and U+E0001 as \x7f, \u200b and \U000e0001
    for escape in ("\\\\u0007", "\\\\u000b", "\\\\u0000", "\\x7f", "\\u200b",
                   "\\U000e0001"):
        assert escape in quoted
    assert decode_failures(quoted) == [odd]


def test_on_exit_marks_the_job_with_step_and_exit_code(tmp_path):
    store = LocalStore(tmp_path / "store")
    create_job(store, JobRecord(job_id="j1", book_uri="b", photo_key="p", child_name="Mia",
                                child_age=5, child_gender="girl"))
    update_job(store, "j1", lambda r: r.move_to(Status.ANALYZING))
    for status in (Status.ANALYZING_COMPLETED, Status.PREPAY_GENERATING):
        update_job(store, "j1", lambda r, s=status: r.move_to(s))
    done = subprocess.run([sys.executable, "-m", "steps.on_exit", "--store", store.uri,
                           "--job-id", "j1", "--workflow-status", "Failed",
                           "--failures", workflow_failures([DAG, RETRY, POD, ROOT_NODE])],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    record = read_job(store, "j1")
    assert record.status == Status.GENERATION_FAILED
    assert (record.error.step, record.error.reason) == ("backgrounds", "exit_137")
    assert "exit code 137" in record.error.message


def test_a_step_that_exited_3_leaves_the_job_as_it_marked_or_refused_it(tmp_path):
    """A refusal (exit 3 without marking: a regeneration over the limit) must not become
    generation_failed through the exit handler; another exit code still does."""
    store = LocalStore(tmp_path / "store")
    create_job(store, JobRecord(job_id="j3", book_uri="b", photo_key="p", child_name="Mia",
                                child_age=5, child_gender="girl"))
    for status in (Status.ANALYZING, Status.ANALYZING_COMPLETED, Status.PREPAY_GENERATING,
                   Status.PREPAY_READY):
        update_job(store, "j3", lambda r, s=status: r.move_to(s))
    refused = {**POD, "templateName": "plan", "message": "Error (exit code 3)"}
    args = [sys.executable, "-m", "steps.on_exit", "--store", store.uri, "--job-id", "j3",
            "--workflow-status", "Failed", "--failures"]
    done = subprocess.run([*args, workflow_failures([refused])], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "exited 3" in done.stderr
    record = read_job(store, "j3")
    assert record.status == Status.PREPAY_READY and record.error is None
    crashed = {**refused, "message": "Error (exit code 1)"}
    subprocess.run([*args, workflow_failures([crashed])], capture_output=True, text=True, cwd=ROOT,
                   check=True)
    record = read_job(store, "j3")
    assert record.status == Status.GENERATION_FAILED and record.error.reason == "exit_1"


# ---- the handler's work, in-process --------------------------------------------------------

def job_in(store: LocalStore, status: Status, job_id: str = "j5", error: JobError | None = None):
    create_job(store, JobRecord(job_id=job_id, book_uri="b", photo_key="p", child_name="Mia",
                                child_age=5, child_gender="girl", status=status, error=error))
    return store.read(job_key(job_id))


def handle(store: LocalStore, failures: list[dict] | str, status: str = "Failed",
           job_id: str = "j5") -> None:
    text = failures if isinstance(failures, str) else workflow_failures(failures)
    on_exit.work(Namespace(store=store.uri, job_id=job_id, workflow_status=status, failures=text))


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.mark.parametrize("status,failed", [
    (Status.ANALYZING, Status.ANALYSIS_FAILED), (Status.PREPAY_GENERATING, Status.GENERATION_FAILED),
    (Status.COMPLETED, Status.GENERATION_FAILED)])
def test_a_crash_is_recorded_with_step_reason_and_sentence(store, capsys, status, failed):
    job_in(store, status)
    handle(store, [RETRY, {**POD, "templateName": "face-swap", "message": "Error (exit code 137)."}])
    record = read_job(store, "j5")
    assert record.status is failed
    assert record.error.model_dump() == {
        "step": "face_swap", "reason": "exit_137",
        "message": "Step face_swap failed (Error (exit code 137)); run the job again with the "
                   "same job id to resume it."}
    assert capsys.readouterr().err == f"on_exit: job j5 marked failed: {record.error.message}\n"


@pytest.mark.parametrize("status,reason", [("Failed", "workflow_failed"), ("Error", "workflow_error")])
def test_without_a_failed_node_the_workflow_is_blamed(store, status, reason):
    job_in(store, Status.POSTPAY_GENERATING)
    handle(store, '"null"', status=status)
    error = read_job(store, "j5").error
    assert (error.step, error.reason) == ("workflow", reason)
    assert error.message == (f"Step workflow failed (the workflow ended {status}); run the job "
                             "again with the same job id to resume it.")


def test_a_message_without_an_exit_code_is_kept_as_the_detail(store):
    job_in(store, Status.PREPAY_GENERATING)
    handle(store, [{**POD, "message": "  Pod was evicted.  "}])
    error = read_job(store, "j5").error
    assert (error.step, error.reason) == ("backgrounds", "workflow_failed")
    assert error.message.startswith("Step backgrounds failed (Pod was evicted); run the job")


def test_success_leaves_the_job_alone(store):
    before = job_in(store, Status.PREPAY_GENERATING)
    handle(store, [POD], status="Succeeded")
    assert store.read(job_key("j5")) == before


@pytest.mark.parametrize("job_id", ["", "../j5", "a b"])
def test_a_job_id_that_is_no_job_id_is_never_looked_up(store, capsys, job_id):
    job_in(store, Status.PREPAY_GENERATING, job_id="j5")
    handle(store, [POD], job_id=job_id)
    assert capsys.readouterr().err == ""            # not even "no job record"
    assert read_job(store, "j5").error is None


def test_a_job_without_a_record_is_reported_not_created(store, capsys):
    handle(store, [POD], job_id="ghost")
    assert capsys.readouterr().err == "on_exit: no job record for ghost; nothing to mark\n"
    assert not store.exists(job_key("ghost"))


def test_a_job_its_step_already_marked_keeps_that_reason(store, capsys):
    own = JobError(step="plan", reason="bad_manifest", message="book.yaml is broken.")
    before = job_in(store, Status.GENERATION_FAILED, error=own)
    handle(store, [POD])
    assert store.read(job_key("j5")) == before
    assert capsys.readouterr().err == "on_exit: job already generation_failed: book.yaml is broken.\n"


def test_a_failed_status_without_an_error_is_still_explained(store):
    job_in(store, Status.GENERATION_FAILED)
    handle(store, [POD])
    assert read_job(store, "j5").error.reason == "exit_137"


def test_exit_3_leaves_the_status_and_says_so(store, capsys):
    before = job_in(store, Status.PREPAY_READY)
    handle(store, [{**POD, "templateName": "plan", "message": "Error (exit code 3)"}])
    assert store.read(job_key("j5")) == before
    assert capsys.readouterr().err == ("on_exit: step plan exited 3 (bad input); the job stays "
                                       "prepay_ready\n")
    handle(store, [{**POD, "message": "Error (exit code 31)"}])   # 31 is not 3
    assert read_job(store, "j5").error.reason == "exit_31"


def test_the_program_takes_the_arguments_argo_passes(store, monkeypatch):
    job_in(store, Status.PREPAY_GENERATING)
    argv = ["on_exit", "--store", store.uri, "--job-id", "j5", "--workflow-status", "Failed"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        on_exit.main()
    assert done.value.code == 0
    assert read_job(store, "j5").error.reason == "workflow_failed"   # --failures may be left out
    monkeypatch.setattr(sys, "argv", argv[:-2])
    with pytest.raises(SystemExit) as refused:
        on_exit.main()
    assert refused.value.code == 2                                   # --workflow-status is required


def test_only_a_summary_still_names_the_step(store):
    job_in(store, Status.PREPAY_GENERATING)
    handle(store, [RETRY, DAG])
    error = read_job(store, "j5").error
    assert (error.step, error.reason) == ("backgrounds", "workflow_failed")
    assert error.message.startswith("Step backgrounds failed (No more retries left); run the")


def test_the_program_says_what_it_takes(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["on_exit", "--help"])
    with pytest.raises(SystemExit) as done:
        on_exit.main()
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith("usage: python -m steps.on_exit ")
    words = " ".join(shown.split())                           # argparse wraps the lines
    assert on_exit.__doc__.splitlines()[0] in words
    for text in ("--workflow-status WORKFLOW_STATUS Succeeded, Failed or Error",
                 "--failures FAILURES {{workflow.failures}}: JSON list of failed nodes"):
        assert text in words


def test_killed_while_marking_the_job_it_leaves_the_record_whole(store):
    """The handler is a step like the others: the fault points arm for ``on_exit``."""
    before = job_in(store, Status.PREPAY_GENERATING)
    args = [sys.executable, "-m", "steps.on_exit", "--store", store.uri, "--job-id", "j5",
            "--workflow-status", "Failed", "--failures", workflow_failures([POD])]
    env = {**os.environ, "BOOKJOB_KILL": "on_exit:update"}
    killed = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env)
    assert killed.returncode == -signal.SIGKILL
    assert store.read(job_key("j5")) == before
    env["BOOKJOB_KILL"] = "plan:update"                      # another step's fault: not armed
    subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, check=True)
    assert read_job(store, "j5").error.reason == "exit_137"
