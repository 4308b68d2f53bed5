"""Alembic revisions of the records schema, oldest first (``steps.core.records_sql.KNOWN``)."""
