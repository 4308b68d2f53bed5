"""``bookjob proof BOOK``: a book's texts checked for every language, gender, age and name length.

No photo and no job: the check itself is the program ``python -m steps.proof`` (it lays text
out with the typesetter, which the CLI does not import), run here as a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.commands.app import app
from pipeline.jobs import book_uri
from steps.protocol import EXIT_FAILURE, EXIT_INPUT


@app.command()
def proof(
    book: Annotated[str, typer.Argument(help="A book folder holding book.yaml, or an s3:// prefix.")],
    sheet: Annotated[Path, typer.Option(
        "--sheet", help="Where to write the contact sheet (PDF): every page, text over the "
                        "illustration, for a few cases per language.")] = Path("proof.pdf"),
) -> None:
    """Check a book's texts without a photo: message errors, missing glyphs, text that does
    not fit its box; one line per problem, exit 3 if any."""
    done = subprocess.run([sys.executable, "-m", "steps.proof", book_uri(book),
                           "--sheet", str(sheet.absolute())], check=False)
    raise typer.Exit(done.returncode if done.returncode in (0, EXIT_INPUT) else EXIT_FAILURE)
