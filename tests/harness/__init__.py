"""A conformance harness: executes a compiled Argo WorkflowTemplate the way the workflow
controller does, each container's command as a local process.

It is a test instrument, not a second engine: it exists to check that ``book-job`` (as
committed in ``argo-templates/`` and as the Helm chart renders it) does on a real controller
what the tests say. Each rule it follows cites the controller source it comes from
(argoproj/argo-workflows; v3.6/v3.7/v4 blobs as read in the project's research notes,
``/work/notes/argo-controller.md``; where versions differ the harness says which it follows).

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
