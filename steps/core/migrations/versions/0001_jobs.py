"""The first records schema: jobs, job_artifacts (the old system's Job and JobArtifact) and
job_leases.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("book_id", sa.String(63)),
        sa.Column("language", sa.String(35), nullable=False),
        sa.Column("analysis_json", JSON),
        sa.Column("error_reason", sa.String(80)),
        sa.Column("record_json", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_jobs_status_updated_at", "jobs", ["status", "updated_at"])
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_index("ix_jobs_book_id_created_at", "jobs", ["book_id", "created_at"])
    op.create_table(
        "job_artifacts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(63), sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("page", sa.Integer),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("inputs_sha256", sa.String(64)),
        sa.Column("extra", JSON),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_job_artifacts_job_id", "job_artifacts", ["job_id", "kind", "page"])
    op.create_table(
        "job_leases",
        sa.Column("job_id", sa.String(63), primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
    op.drop_table("job_artifacts")
    op.drop_table("jobs")
