"""pytest fixtures for testing an app that calls upstreams through wsgi_pool.

Enable them in a ``conftest.py``::

    pytest_plugins = ["wsgi_pool.pytest_plugin"]

- ``upstream``: a real HTTP/1.1 server on 127.0.0.1 (:class:`wsgi_pool.testing.Upstream`),
  started for the test and stopped after it: give paths canned answers with
  ``upstream.answer(...)``, assert what the app sent with ``upstream.seen(...)``.
- ``fresh_pools``: the test starts and ends with no pools in this process, so statistics and
  connections of one test never show in another.

Mocks that patch requests (``responses``, ``requests-mock``) need nothing from here: they
intercept wsgi_pool's calls as they intercept requests'.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import _process
from .testing import Upstream

__all__ = ["fresh_pools", "upstream"]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A loopback upstream for one test: it echoes each request as JSON unless a path has an answer."""
    with Upstream() as server:
        yield server


@pytest.fixture
def fresh_pools() -> Iterator[None]:
    """No pools in this process before or after the test (each builds its own on first use),
    and no settings an app gave in code left over from another test."""
    _process.close_process_pools()
    _process.forget_adopted()
    yield
    _process.close_process_pools()
    _process.forget_adopted()
