"""Fixtures: real loopback upstreams (plain and TLS; ``upstream`` is the one of
``wsgi_pool.pytest_plugin``), a clean process registry for every test, Django's settings, and
the fault harness. Shared helpers are in ``support.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.harness import Harness
from tests.support import tls_upstream, write_ca
from wsgi_pool import _pool, _process
from wsgi_pool.testing import Upstream

# pytester: tests/test_testing.py runs a user's suite with our pytest plugin; this suite uses
# the plugin's own ``upstream`` fixture.
pytest_plugins = ["pytester", "wsgi_pool.pytest_plugin"]


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    """Each test starts with no pools, no server report, no cached settings and no garbage
    collection backed off by an earlier test's waits; its pools are closed after."""
    _process.close_process_pools()
    _process.forget_adopted()
    _process.record_server(None)
    _pool._collect = _pool._Collections()
    yield
    _process.close_process_pools()
    _process.forget_adopted()
    _process.record_server(None)
    _process.record_master(None)


@pytest.fixture
def second_upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A certificate authority for the TLS upstreams of one test module."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    """The file of ``ca``'s certificate: what a client verifies the TLS upstreams with."""
    return write_ca(ca, tmp_path)


@pytest.fixture
def https_upstream(ca: trustme.CA) -> Iterator[Upstream]:
    """An HTTPS upstream on 127.0.0.1 whose certificate ``ca`` issued (for 127.0.0.1 and localhost)."""
    with tls_upstream(ca, "127.0.0.1", "localhost") as server:
        yield server


@pytest.fixture(scope="module")
def django_settings() -> None:
    """Django's settings, configured once (what a test of the Django adapter needs)."""
    from django.conf import settings  # noqa: PLC0415  (Django is loaded only where it is used)

    if not settings.configured:
        settings.configure(ALLOWED_HOSTS=["testserver"], ROOT_URLCONF=[], SECRET_KEY="tests-only")  # noqa: S106


@pytest.fixture
def harness(upstream: Upstream) -> Iterator[Harness]:
    """Fault servers and clients for one scenario; all closed after it (see ``harness.py``)."""
    made = Harness(upstream)
    yield made
    made.close()
