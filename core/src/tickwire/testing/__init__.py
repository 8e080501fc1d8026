"""The conformance kit for plugin authors: ``pip install tickwire[testing]``.

* :func:`check_provider` and :func:`check_sink`: contract checks as plain async functions (no
  pytest needed) that any provider or sink plugin runs against its own fake server or store;
* :class:`MemorySink`: a sink that keeps what it is given, for assertions;
* :func:`iter_cases` and :func:`check_case`: golden ``frames.jsonl`` / ``expected.jsonl`` cases
  for a normalizer, compared by content (:mod:`tickwire.testing.cases`);
* :func:`require_service`: a test's real service is missing: fail under CI, skip elsewhere;
* ``tickwire.testing.strategies``: hypothesis strategies for events;
* ``tickwire.testing.pytest_plugin``: fixtures, enabled with one line in a ``conftest.py``::

      pytest_plugins = ["tickwire.testing.pytest_plugin"]
"""

from tickwire.testing.cases import check_case as check_case
from tickwire.testing.cases import iter_cases as iter_cases
from tickwire.testing.memory import MemorySink as MemorySink
from tickwire.testing.provider import FakeServer as FakeServer
from tickwire.testing.provider import ProviderReport as ProviderReport
from tickwire.testing.provider import check_provider as check_provider
from tickwire.testing.services import require_service as require_service
from tickwire.testing.sink import check_sink as check_sink

__all__ = (
    "FakeServer",
    "MemorySink",
    "ProviderReport",
    "check_case",
    "check_provider",
    "check_sink",
    "iter_cases",
    "require_service",
)
