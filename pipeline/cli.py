"""``bookjob``: the command-line entry point (``pipeline.cli:app``).

The app and its shared options live in :mod:`pipeline.commands.app`; importing the command
modules registers their commands on it.
"""

from __future__ import annotations

import sys
import warnings

# A step process forked from the warm launcher's fork server (which has this module imported)
# re-runs the parent's main module, this one, as multiprocessing does; runpy then warns that it
# is imported already. It is, on purpose: nothing to warn about.
warnings.filterwarnings("ignore", message="'pipeline.cli' found in sys.modules",
                        category=RuntimeWarning)

from pipeline.commands import (  # noqa: E402 - after the filter above
    cluster,  # noqa: F401, I001 - registers submit, watch, logs
    events,  # noqa: F401, I001 - registers events
    local,  # noqa: F401 - registers run, status, demo, templates
    proof,  # noqa: F401, I001 - registers proof
    records,  # noqa: F401, I001 - registers jobs, db
    worker,  # noqa: F401, I001 - registers worker
)
from pipeline.commands.app import app  # noqa: E402

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - `python -m pipeline.cli`
    sys.exit(app())


if __name__ == "__main__":
    main()
