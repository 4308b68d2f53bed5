"""The records database's schema, as Alembic revisions (``bookjob db upgrade`` applies them)."""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError as SqlInterfaceError
from sqlalchemy.exc import OperationalError

from steps.core.errors import SetupError
from steps.core.records_sql import (
    HEAD,
    KNOWN,
    MIGRATIONS,
    did_not_answer,
    make_engine,
    revision,
    shown,
)


def upgrade(url: str) -> tuple[str | None, str]:
    """Create or migrate the schema to :data:`HEAD`: (the revision before, the revision now)."""
    from alembic import command
    from alembic.config import Config

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            with connection.begin():
                before = revision(connection)
            if before is not None and before not in KNOWN:
                raise SetupError(f"the records database {shown(url)} was migrated by a newer "
                                 f"bookjob (revision {before}); upgrade bookjob.")
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            with connection.execution_options(write=True).begin():
                command.upgrade(config, "head")
            with connection.begin():
                after = revision(connection)
    except (OperationalError, SqlInterfaceError) as e:
        raise did_not_answer(shown(url), e) from e
    finally:
        engine.dispose()
    return before, after or HEAD
