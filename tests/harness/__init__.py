"""A conformance harness: executes a compiled Argo WorkflowTemplate the way the workflow
controller does, each container's command as a local process.

It is a test instrument, not a second engine: it exists to check that ``book-job`` (as
committed in ``argo-templates/`` and as the Helm chart renders it) does on a real controller
what the tests say. Each rule it follows cites the controller source it comes from:
argoproj/argo-workflows ``workflow/controller/operator.go`` (v4-era master blob, and commit
00068233afff3c2524fa0c331ffe5ec15bb1a567 for the v3.0 form), ``dag.go``, ``workflowpod.go``,
``workflow/common/ancestry.go``, ``workflow/sync/semaphore.go``, ``util/template``, as read
for the project's research notes (``/work/notes/argo-controller.md``; the source index did
not expose release tags, so v3.6.19 / v3.7.18 / v4.1.2 could not be pinned file by file).
Where versions differ the harness follows v3.x and can speak v4 (``style="v4"``: pod
messages prefixed ``main: ``).

- :mod:`tests.harness.expr` parameter substitution, ``when``/``depends``/retry expressions,
  ``strconv.Quote`` and ``{{workflow.failures}}``;
- :mod:`tests.harness.pod` a container template run as a local process (volume mounts mapped
  to folders, the progress file, ``activeDeadlineSeconds``, exit code to node message);
- :mod:`tests.harness.controller` workflows: DAGs, ``withParam`` fan-out, ``retryStrategy``,
  semaphores, deadlines and the exit handler.

Features the harness does not implement are refused, never ignored: a template that uses one
fails the run with :class:`Unsupported`.
"""

from tests.harness.controller import Controller, Node, Workflow  # noqa: F401
from tests.harness.expr import Unsupported  # noqa: F401
