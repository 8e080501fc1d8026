"""Tests that need a real service (a database, a cache, a broker).

A test that talks to PostgreSQL, Redis or NATS must not pass without it under CI, yet a developer
without the service should see why a test did not run::

    try:
        conn = await asyncpg.connect(DSN, timeout=5)
    except OSError as exc:
        require_service(f"PostgreSQL at {DSN}", exc)
"""

from __future__ import annotations

import os
from typing import NoReturn


def require_service(service: str, problem: BaseException | str) -> NoReturn:
    """The service a test needs is missing: fail the test when ``CI`` is set, skip it otherwise.

    :param service: what is missing, as a reader would look for it (``"Redis at
        127.0.0.1:6379"``).
    :param problem: the error that showed it (or a sentence).
    """
    import pytest  # only tests call this

    if os.environ.get("CI"):
        pytest.fail(f"{service} is required under CI: {problem!r}")
    pytest.skip(f"{service} is not running ({problem!r}); set CI to make this fail")
