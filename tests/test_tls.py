"""HTTPS through the pools, against a real TLS upstream with certificates generated for the test."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme

import wsgi_pool
from wsgi_pool import PoolConfig, PoolTimeout
from wsgi_pool.testing import Upstream


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_upstream(ca: trustme.CA, *names: str) -> Upstream:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return Upstream(tls=context)


@pytest.fixture
def https_upstream(ca: trustme.CA) -> Iterator[Upstream]:
    with tls_upstream(ca, "127.0.0.1", "localhost") as server:
        yield server


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def test_https_calls_are_verified_and_pooled(https_upstream: Upstream, ca_file: str) -> None:
    """Verified HTTPS calls from many clients reuse one TLS connection."""
    assert https_upstream.url.startswith("https://127.0.0.1:")
    for number in range(5):
        answer = wsgi_pool.client().get(f"{https_upstream.url}/s/{number}", verify=ca_file).json()
        assert answer["path"] == f"/s/{number}"
    assert https_upstream.stats().connections_opened == 1


def test_an_untrusted_certificate_is_an_ssl_error_and_poisons_nothing(
    https_upstream: Upstream, ca_file: str
) -> None:
    """Verification is on by default: a certificate from an unknown CA raises SSLError; trusted calls still work."""
    with pytest.raises(requests.exceptions.SSLError):
        wsgi_pool.client().get(f"{https_upstream.url}/default-trust-store")
    assert wsgi_pool.client().get(f"{https_upstream.url}/ok", verify=ca_file).status_code == 200


def test_a_certificate_for_another_host_is_an_ssl_error(ca: trustme.CA, ca_file: str) -> None:
    """A certificate that does not name the host called is rejected."""
    with (
        tls_upstream(ca, "inventory.internal") as server,
        pytest.raises(requests.exceptions.SSLError),
    ):
        wsgi_pool.client().get(f"{server.url}/x", verify=ca_file)


def test_https_pool_wait_is_bounded(https_upstream: Upstream, ca_file: str) -> None:
    """The bounded pool wait holds for HTTPS pools too."""
    http = wsgi_pool.client(PoolConfig(pool_maxsize=1, pool_timeout=0.2))
    held = http.get(f"{https_upstream.url}/big?size=4000000", stream=True, verify=ca_file)
    with pytest.raises(
        PoolTimeout, match=r"https://127\.0\.0\.1:\d+: no free connection after waiting 0\.2 s"
    ):
        http.get(f"{https_upstream.url}/second", verify=ca_file)
    held.close()
    assert http.get(f"{https_upstream.url}/third", verify=ca_file).status_code == 200
