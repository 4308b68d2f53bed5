"""Settings from the environment (``BOOKJOB_*``), read in one place, with their defaults.

Every ``BOOKJOB_*`` variable a step, the engine or the CLI reads is a field of
:class:`Settings`; an empty variable means "not set". :func:`settings` follows the environment
as it is when called (tests and a worker's jobs change it; what it read is reused until a
``BOOKJOB_*`` variable changes), and a value
that is not of its field's type is a :class:`~steps.core.errors.SetupError` naming the variable.
Command-line options win over these; the defaults below are the single table the pipeline
spec, the CLI and the steps take theirs from.
"""

from __future__ import annotations

import functools
import os
from typing import Literal

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from steps.core.errors import SetupError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKJOB_", env_ignore_empty=True, extra="ignore",
                                      frozen=True)

    store: str = "./bookjob-store"              # the CLI's store: a folder or s3://bucket/prefix
    records: str = "store"                       # job records: store, sqlite:///…, postgresql://…
    # backends (the local engine's defaults; the Argo template has the cluster's)
    analyzer: Literal["heuristic", "qwen2-vl"] = "heuristic"
    analyzer_model: str = ""                     # a local Qwen2-VL directory
    face_backend: Literal["classic", "comfyui"] = "classic"
    comfyui_url: str = ""
    comfyui_timeout: float = 600.0               # seconds ComfyUI may take for one page
    comfyui_workflow: str = ""                   # another API-format workflow file
    comfyui_ready_timeout: float = 0.0           # wait this long for a starting sidecar
    chromium: str = ""                           # the Chromium executable for the render step
    # the status webhook
    notify_url: str = ""
    notify_secret: str = ""
    allow_unsigned: bool = False                 # a webhook without a secret: sent unsigned
    # S3 (credentials, region and endpoint come from the standard AWS environment)
    s3_connect_timeout: float = 10.0
    s3_read_timeout: float = 60.0
    # the job flow
    max_regenerations: int = 5                   # prepay regenerations a job may have
    allow_http_hosts: str = ""                   # host[:port],… that http:// sources may name
    lease_s: float = 30.0                        # a run's lease on its job, renewed while it runs
    # the local engine and the cluster client
    launch: Literal["warm", "exec"] = "warm"     # exec: a fresh interpreter per step
    pages_ahead: bool = True                     # render sets each page as its background is stored
    argo_ui: str = ""                            # the Argo UI's address, for links
    # fault injection for the crash tests (steps.core.faults); never set in production
    kill: str = ""
    kill_once: str = ""
    kill_scope: Literal["", "step", "group"] = ""


def settings() -> Settings:
    """The settings as the environment says now (read again whenever a ``BOOKJOB_*``
    variable has changed: a step asks many times, and reading them costs about a millisecond)."""
    return _settings(tuple(sorted((k.upper(), v) for k, v in os.environ.items()
                                  if k.upper().startswith("BOOKJOB_"))))


@functools.lru_cache(maxsize=16)
def _settings(environment: tuple[tuple[str, str], ...]) -> Settings:
    try:
        return Settings()
    except ValidationError as e:
        first = e.errors()[0]
        name = "BOOKJOB_" + str(first["loc"][0]).upper()
        raise SetupError(f"{name} is set to {str(first.get('input'))[:80]!r}, which is not "
                         f"valid ({first['msg']}); fix or unset it.") from None
