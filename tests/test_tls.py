"""HTTPS through the pools, against a real TLS upstream with certificates generated for the test."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import requests
import trustme
from urllib3.exceptions import InsecureRequestWarning

import wsgi_pool
from tests.support import tls_upstream, write_ca
from wsgi_pool import (
    InsecureRequestRefused,
    PoolConfig,
    PoolTimeout,
    UpstreamSettings,
    UpstreamTLSError,
)
from wsgi_pool.testing import Upstream


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


def test_an_expired_certificate_is_an_ssl_error(ca: trustme.CA, ca_file: str) -> None:
    """A certificate past its not-after date is rejected, with no retry and no request sent."""
    ended = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    expired = tls_upstream(
        ca, "127.0.0.1", not_before=ended - datetime.timedelta(days=30), not_after=ended
    )
    with expired as server:
        with pytest.raises(UpstreamTLSError, match="certificate has expired") as caught:
            wsgi_pool.client().get(f"{server.url}/x", verify=ca_file)
        assert isinstance(caught.value, requests.exceptions.SSLError)
        assert server.stats().requests_served == 0


def test_each_upstream_is_verified_with_its_own_ca(tmp_path: Path) -> None:
    """upstreams[origin].ca_bundle: each of two private CAs verifies its own upstream only."""
    cas = [trustme.CA(), trustme.CA()]
    files = [write_ca(authority, tmp_path, f"ca{n}.pem") for n, authority in enumerate(cas)]
    with tls_upstream(cas[0], "127.0.0.1") as first, tls_upstream(cas[1], "127.0.0.1") as second:
        right = wsgi_pool.client(
            PoolConfig(
                upstreams={
                    first.url: UpstreamSettings(ca_bundle=files[0]),
                    second.url: UpstreamSettings(ca_bundle=files[1]),
                }
            )
        )
        assert right.get(f"{first.url}/a").status_code == 200
        assert right.get(f"{second.url}/b").status_code == 200
        crossed = wsgi_pool.client(
            PoolConfig(
                ca_bundle=files[0], upstreams={second.url: UpstreamSettings(ca_bundle=files[0])}
            )
        )
        assert crossed.get(f"{first.url}/c").status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            crossed.get(f"{second.url}/d")


def test_verify_false_is_refused_unless_the_config_allows_it(https_upstream: Upstream) -> None:
    """verify=False raises InsecureRequestRefused by default, before anything is sent."""
    http = wsgi_pool.client()
    with pytest.raises(InsecureRequestRefused, match="allow_unverified=True"):
        http.get(f"{https_upstream.url}/x", verify=False)
    http.verify = False
    with pytest.raises(InsecureRequestRefused):
        http.get(f"{https_upstream.url}/x")
    assert https_upstream.stats().connections_opened == 0


def test_an_unverified_call_never_shares_a_connection_with_verified_ones(
    https_upstream: Upstream, ca_file: str
) -> None:
    """With allow_unverified, verify=False gets its own pool: a verified call after it still verifies."""
    http = wsgi_pool.client(PoolConfig(allow_unverified=True))
    with pytest.warns(InsecureRequestWarning):
        assert http.get(f"{https_upstream.url}/a", verify=False).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        http.get(f"{https_upstream.url}/b")  # certifi does not trust the test CA: no reuse of /a's
    assert http.get(f"{https_upstream.url}/c", verify=ca_file).status_code == 200
    with pytest.warns(InsecureRequestWarning):
        assert http.get(f"{https_upstream.url}/d", verify=False).status_code == 200
    stats = https_upstream.stats()
    assert (stats.requests_served, stats.connections_opened) == (3, 3)
