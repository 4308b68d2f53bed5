"""``bookjob``: the command-line entry point (``pipeline.cli:app``).

The app and its shared options live in :mod:`pipeline.commands.app`; importing the command
modules registers their commands on it.
"""

from __future__ import annotations

import sys

from pipeline.commands import (
    cluster,  # noqa: F401, I001 - registers submit, watch, logs
    local,  # noqa: F401 - registers run, status, demo, templates
    proof,  # noqa: F401, I001 - registers proof
    records,  # noqa: F401, I001 - registers jobs, db
)
from pipeline.commands.app import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - `python -m pipeline.cli`
    sys.exit(app())


if __name__ == "__main__":
    main()
