"""Errors that mean something to the pipeline.

An :class:`InputError` is permanent: the photo, the manifest or the child's fields are wrong,
so retrying cannot help. Steps exit with :data:`EXIT_INPUT` for it, which Argo's retry
expression and the local engine both treat as final.
"""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INPUT = 3


class SetupError(RuntimeError):
    """This machine or image lacks something a step needs (Chromium, say): the step prints the
    one-line ``message`` (what to install or set) instead of a traceback, and exits with
    :data:`EXIT_FAILURE` like any other failure that rerunning on a fixed machine cures."""


class InputError(Exception):
    """Bad input: ``reason`` is a short machine-readable code, ``message`` one sentence for a person."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
