"""Fixtures: real loopback upstreams, and a clean process registry for every test."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from wsgi_pool import _process
from wsgi_pool.testing import Upstream

ROOT = Path(__file__).resolve().parent.parent


def tls_context(ca: trustme.CA, *names: str, **validity: Any) -> ssl.SSLContext:
    """A server TLS context with a certificate ``ca`` issued for ``names`` (``not_after=...``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names, **validity).configure_cert(context)
    return context


def tls_upstream(ca: trustme.CA, *names: str, **validity: Any) -> Upstream:
    """An HTTPS :class:`Upstream`, not started, with a certificate ``ca`` issued for ``names``."""
    return Upstream(tls=tls_context(ca, *names, **validity))


def write_ca(ca: trustme.CA, directory: Path, name: str = "ca.pem") -> str:
    """Write ``ca``'s certificate into ``directory``; the file's path."""
    path = directory / name
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    """Each test starts with no pools, no server report and no cached settings; its pools are closed after."""
    _process.close_process_pools()
    _process._env_default = None
    _process.record_server(None)
    yield
    _process.close_process_pools()
    _process._env_default = None
    _process.record_server(None)
    _process.record_master(None)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture
def second_upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


def run_together(*calls: Callable[[], Any], timeout: float = 30.0) -> list[Any]:
    """Start one thread per call at the same moment, join them all, re-raise the first error."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout)
            results[index] = call()
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    if errors:
        raise errors[0]
    return results
