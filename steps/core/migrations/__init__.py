"""The records database's schema, as Alembic revisions (``bookjob db upgrade`` applies them)."""
