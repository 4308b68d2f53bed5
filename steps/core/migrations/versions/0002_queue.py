"""The worker's queue: ``jobs.queued_at``, when a stage waiting for a worker was asked for.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(sa.Column("queued_at", sa.DateTime(timezone=True)))
        jobs.create_index("ix_jobs_queued_at", ["queued_at"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as jobs:
        jobs.drop_index("ix_jobs_queued_at")
        jobs.drop_column("queued_at")
