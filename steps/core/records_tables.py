"""The records database's tables (SQLAlchemy Core): what :mod:`steps.core.records_sql` reads
and writes, and what the Alembic revisions in :mod:`steps.core.migrations` make (a test
compares the two). Their columns are described in :mod:`steps.core.records_sql`."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

Json = JSON().with_variant(JSONB(), "postgresql")
metadata = MetaData()
jobs = Table(
    "jobs", metadata,
    Column("id", String(63), primary_key=True),
    Column("schema_version", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(40), nullable=False),
    Column("book_id", String(63)),
    Column("language", String(35), nullable=False),
    Column("analysis_json", Json),
    Column("error_reason", String(80)),
    Column("record_json", Json, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("queued_at", DateTime(timezone=True)),     # a stage waiting for a worker
    Index("ix_jobs_status_updated_at", "status", "updated_at"),
    Index("ix_jobs_queued_at", "queued_at"),
    Index("ix_jobs_created_at", "created_at"),
    Index("ix_jobs_book_id_created_at", "book_id", "created_at"),
)
job_artifacts = Table(
    "job_artifacts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(63), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("page", Integer),
    Column("key", String(1024), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("inputs_sha256", String(64)),
    Column("extra", Json),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_job_artifacts_job_id", "job_id", "kind", "page"),
)
job_events = Table(
    "job_events", metadata,
    Column("job_id", String(63), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("type", String(16), nullable=False),
    Column("event", Json, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),   # settled: delivered, or given up
    Index("ix_job_events_delivered_at", "delivered_at"),
)
job_leases = Table(
    "job_leases", metadata,
    Column("job_id", String(63), primary_key=True),
    Column("holder", Text, nullable=False),
    Column("version", Integer, nullable=False),
)
# The record's fields that are columns of `jobs` (the rest goes to record_json).
COLUMNS = ("schema_version", "status", "book_id", "language", "analysis", "created_at",
           "updated_at")
