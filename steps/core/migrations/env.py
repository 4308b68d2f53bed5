"""Alembic's environment for the records schema: run on the connection that
:func:`steps.core.migrations.upgrade` hands over (never a URL of its own)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
