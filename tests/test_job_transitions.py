"""The job status state machine, pinned as a table: each of the 64 ordered pairs of statuses is
either allowed or refused, and this file says which, independently of ``TRANSITIONS``.

``scripts/mutation.py`` flips each edge of ``TRANSITIONS`` in turn (adds it if absent, removes
it if present) and runs this file: every flip must fail it (the ``transitions`` row)."""

from __future__ import annotations

import pytest

from steps.core.job import InvalidTransition, JobError, JobRecord, Status, StatusChange

# Rows: the status a job is in; columns: the status asked for; x = allowed, . = refused.
COLUMNS = ("analyzing", "analyzing_completed", "prepay_generating", "prepay_ready",
           "postpay_generating", "completed", "analysis_failed", "generation_failed")
TABLE = """
                      AN AC PG PR QG CO AF GF
analyzing              x  x  .  .  .  .  x  .
analyzing_completed    x  x  x  .  .  .  .  x
prepay_generating      x  .  x  x  .  .  .  x
prepay_ready           x  .  x  .  x  .  .  x
postpay_generating     x  .  .  .  x  x  .  x
completed              x  .  .  .  x  .  .  x
analysis_failed        x  .  .  .  .  .  x  .
generation_failed      x  x  x  .  x  .  .  x
"""


def _allowed() -> dict[tuple[str, str], bool]:
    rows = [line.split() for line in TABLE.strip().splitlines()[1:]]
    assert [row[0] for row in rows] == list(COLUMNS)
    return {(row[0], to): mark == "x" for row in rows for to, mark in zip(COLUMNS, row[1:], strict=True)}


ALLOWED = _allowed()
FAILED = {"analysis_failed", "generation_failed"}


def test_the_table_covers_every_status_once():
    assert set(COLUMNS) == {s.value for s in Status} and len(COLUMNS) == len(Status) == 8
    assert len(ALLOWED) == 64 and sum(ALLOWED.values()) == 29


def record_in(status: str) -> JobRecord:
    """A record resting in ``status`` that carries an error (to see when a move clears it)."""
    return JobRecord(job_id="j1", book_uri="/b", photo_key="uploads/j1/photo.jpg",
                     child_name="Mia", child_age=5, child_gender="girl", status=Status(status),
                     status_history=[StatusChange(status=Status(status), at="t0")],
                     error=JobError(step="render", reason="exit_1", message="Crashed."))


@pytest.mark.parametrize("source,target", sorted(ALLOWED))
def test_each_pair_of_statuses_is_allowed_or_refused_as_the_table_says(source, target):
    record = record_in(source)
    before = record.model_dump()
    if ALLOWED[source, target]:
        record.move_to(Status(target))
        assert record.status is Status(target)
        assert [c.status.value for c in record.status_history] == [source, target]
        # resuming clears the last error; recording a failure keeps it (mark_failed sets it)
        assert (record.error is None) is (target not in FAILED)
        assert record.model_dump(exclude={"status", "status_history", "error"}) == {
            k: v for k, v in before.items() if k not in ("status", "status_history", "error")}
    else:
        with pytest.raises(InvalidTransition) as refused:
            record.move_to(Status(target))
        assert str(refused.value) == f"job j1 is {source}; it cannot become {target}"
        assert record.model_dump() == before      # a refusal changes nothing


def test_every_status_leads_back_to_completed():
    """No status is a dead end: from each, moves that move_to accepts reach completed."""
    for source in COLUMNS:
        seen, frontier = {source}, [source]
        while frontier:
            here = frontier.pop()
            for target in COLUMNS:
                try:
                    record_in(here).move_to(Status(target))
                except InvalidTransition:
                    continue
                if target not in seen:
                    seen.add(target)
                    frontier.append(target)
        assert "completed" in seen, source
