"""steps.on_exit reads ``{{workflow.failures}}`` in the exact form the controller passes it
(``workflow/controller/operator.go``: json.Marshal of the Failed/Error nodes, then
strconv.Quote; Go map order; DAG, Retry and workflow nodes included; "null" for none), and
marks the job with the failing step and its exit code — never crashing on odd input."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from steps.core.job import JobRecord, Status, create_job, read_job, update_job
from steps.core.store import LocalStore
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


@pytest.mark.parametrize("text", ["", '"null"', "null", "garbage", '"[1, 2]"', '"{}"', "[",
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
    odd = {**POD, "message": "Error (exit code 1): bad\x07\x00 \u200b"}  # \a, \x00, \u200b
    assert decode_failures(workflow_failures([odd])) == [odd]


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
