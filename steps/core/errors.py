"""Errors that mean something to the pipeline, in one hierarchy.

- :class:`InputError`: bad input (the photo, the manifest, the child's fields, a job id): permanent,
  so retrying cannot help. The step marks the job failed with ``reason`` and exits
  :data:`steps.protocol.EXIT_INPUT`, which Argo's retry expression and the local engine treat
  as final.
- :class:`SetupError`: this machine or image lacks something a step needs (Chromium, a model
  file): one line for the operator, exit 1, retried like anything a fixed machine cures.
- :class:`TransientError`: something outside the job failed for now (the store, the ComfyUI
  server, the browser): one line, exit 1, retried by the engines.
"""


class InputError(Exception):
    """Bad input: ``reason`` is a short machine-readable code, ``message`` one sentence for a person."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Refusal(InputError):
    """A request refused before any work (a regeneration over the limit, another book for a
    bound job): exit 3 like bad input, but the job stays as it was, not failed."""


class SetupError(RuntimeError):
    """The machine or image lacks something: ``str(e)`` says what to install or set."""


class TransientError(RuntimeError):
    """A failure that running the step again may cure."""
