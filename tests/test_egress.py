"""The egress policy judges the address actually connected to, however the host is spelled."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests
import trustme

import wsgi_pool
from tests.support import tls_upstream, write_ca
from wsgi_pool import EgressDenied, PoolConfig, UpstreamUnreachable
from wsgi_pool._egress import EgressPolicy
from wsgi_pool.testing import Upstream, free_port

# Ways to write 127.0.0.2 that a check of the URL's text would not recognise.
SPELLINGS = ["127.0.0.2", "2130706434", "0x7f000002", "127.2", "0177.0.0.2", "[::ffff:127.0.0.2]"]


@pytest.fixture
def target() -> Iterator[Upstream]:
    with Upstream("127.0.0.2") as server:
        yield server


def spelled(server: Upstream, host: str, path: str = "/x") -> str:
    return f"http://{host}:{server.url.rsplit(':', 1)[1]}{path}"


@pytest.mark.parametrize("host", SPELLINGS)
def test_every_spelling_reaches_the_address(target: Upstream, host: str) -> None:
    """The control: without a policy, each spelling connects to 127.0.0.2."""
    assert wsgi_pool.client().get(spelled(target, host)).json()["path"] == "/x"


@pytest.mark.parametrize("host", SPELLINGS)
def test_a_denied_address_is_refused_however_spelled(target: Upstream, host: str) -> None:
    """egress_deny=127.0.0.2: every spelling raises EgressDenied before a byte is sent; other hosts work."""
    http = wsgi_pool.client(PoolConfig(egress_deny=("127.0.0.2",)))
    with pytest.raises(EgressDenied) as caught:
        http.get(spelled(target, host))
    assert isinstance(caught.value, requests.exceptions.ConnectionError)
    assert "in egress_deny 127.0.0.2/32" in str(caught.value)
    assert target.stats().connections_opened == 0
    assert caught.value.request is not None
    assert all(found.in_use == 0 for found in http.pools.stats().values())


@pytest.mark.parametrize("host", ["0.0.0.0", "0"])
def test_the_unspecified_address_is_judged_as_this_host(upstream: Upstream, host: str) -> None:
    """``http://0.0.0.0:PORT`` connects to this host (the control shows it): a policy that
    denies loopback refuses it too."""
    url = spelled(upstream, host)
    assert wsgi_pool.client().get(url).json()["path"] == "/x"
    upstream.reset()
    with pytest.raises(EgressDenied):
        wsgi_pool.client(PoolConfig(egress_deny=("127.0.0.0/8",))).get(url)
    assert upstream.stats().connections_opened == 0


def test_deny_private_refuses_loopback_and_an_allow_entry_lets_one_through(
    upstream: Upstream, target: Upstream
) -> None:
    """egress_deny_private refuses 127.0.0.0/8; an address in egress_allow is still allowed."""
    strict = wsgi_pool.client(PoolConfig(egress_deny_private=True))
    with pytest.raises(EgressDenied, match="not globally routable"):
        strict.get(f"{upstream.url}/x")
    opened = wsgi_pool.client(PoolConfig(egress_deny_private=True, egress_allow=("127.0.0.1",)))
    assert opened.get(f"{upstream.url}/x").status_code == 200
    with pytest.raises(EgressDenied, match=r"127\.0\.0\.2 is not globally routable"):
        opened.get(f"{target.url}/x")
    allowlist = wsgi_pool.client(PoolConfig(egress_allow=("127.0.0.1",)))
    assert allowlist.get(f"{upstream.url}/x").status_code == 200
    with pytest.raises(EgressDenied, match="not in egress_allow"):
        allowlist.get(f"{target.url}/x")


def test_a_redirect_hop_to_a_denied_address_is_refused(
    upstream: Upstream, target: Upstream
) -> None:
    """An allowed upstream redirecting to a denied address: the hop raises EgressDenied, nothing reaches it."""
    http = wsgi_pool.client(PoolConfig(egress_deny=("127.0.0.2",)))
    hop = spelled(target, "2130706434", "/metadata")
    with pytest.raises(EgressDenied):
        http.get(f"{upstream.url}/r?status=302&location={quote(hop, safe='')}")
    assert upstream.stats().requests_served == 1
    assert target.stats().connections_opened == 0


def test_a_host_name_is_judged_by_what_it_resolves_to(upstream: Upstream) -> None:
    """localhost resolves to 127.0.0.1: denied by its address, not its name."""
    port = upstream.url.rsplit(":", 1)[1]
    http = wsgi_pool.client(PoolConfig(egress_deny=("127.0.0.1",)))
    with pytest.raises(EgressDenied, match=r"refused 'localhost': 127\.0\.0\.1 \(in egress_deny"):
        http.get(f"http://localhost:{port}/x")


def test_tls_still_verifies_the_host_name_under_a_policy(tmp_path: Any) -> None:
    """The policy connects to the checked address, but TLS verifies the name: a cert for 'localhost' only passes."""
    ca = trustme.CA()
    with tls_upstream(ca, "localhost") as server:
        port = server.url.rsplit(":", 1)[1]
        config = PoolConfig(egress_deny=("10.0.0.0/8",), ca_bundle=write_ca(ca, tmp_path))
        http = wsgi_pool.client(config)
        assert http.get(f"https://localhost:{port}/x").json()["path"] == "/x"
        with pytest.raises(requests.exceptions.SSLError):
            http.get(f"https://127.0.0.1:{port}/x")


def test_the_first_allowed_address_that_answers_is_used(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name with several addresses: denied ones are skipped, one that refuses is passed over, repeats tried once."""
    port = int(upstream.url.rsplit(":", 1)[1])
    dead = free_port("127.0.0.3")
    answers = {
        "multi.test": [
            ("127.0.0.9", port),
            ("127.0.0.3", port),
            ("127.0.0.1", port),
            ("127.0.0.1", port),
        ],
    }
    real = socket.getaddrinfo

    def fake(host: str, *args: Any, **kwargs: Any) -> Any:
        # The only mock: this machine has no DNS name with several addresses.
        if host not in answers:
            return real(host, *args, **kwargs)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, dead if i == 1 else p))
            for i, (address, p) in enumerate(answers[host])
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    http = wsgi_pool.client(PoolConfig(egress_deny=("127.0.0.9",)))
    # 127.0.0.3 refuses (nothing listens on its port), 127.0.0.1 answers.
    assert http.get(f"http://multi.test:{port}/x").json()["path"] == "/x"


def test_a_name_that_does_not_resolve_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a policy, a failed lookup is still UpstreamUnreachable, as without one."""

    def no_such_name(host: str, *args: Any, **kwargs: Any) -> Any:
        # The only mock: a real lookup would leave loopback for this machine's resolver.
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    http = wsgi_pool.client(PoolConfig(egress_deny=("10.0.0.0/8",), retries=0))
    with pytest.raises(UpstreamUnreachable, match="name resolution failed"):
        http.get("http://nonexistent.invalid/x")


@pytest.mark.parametrize(
    ("settings", "address", "refused"),
    [
        pytest.param({"deny_private": True}, "169.254.169.254", True, id="aws-gcp-azure-metadata"),
        pytest.param({"deny_private": True}, "fd00:ec2::254", True, id="aws-metadata-ipv6"),
        pytest.param({"deny_private": True}, "100.100.100.200", True, id="alibaba-metadata"),
        pytest.param({"deny_private": True}, "10.1.2.3", True, id="rfc1918"),
        pytest.param({"deny_private": True}, "192.168.0.1", True, id="rfc1918-192"),
        pytest.param({"deny_private": True}, "::1", True, id="ipv6-loopback"),
        pytest.param({"deny_private": True}, "0.0.0.0", True, id="unspecified"),
        pytest.param({"deny_private": True}, "fe80::1%eth0", True, id="link-local-scoped"),
        pytest.param({"deny_private": True}, "224.0.0.1", True, id="multicast"),
        pytest.param({"deny_private": True}, "::ffff:169.254.169.254", True, id="mapped-metadata"),
        pytest.param({"deny_private": True}, "8.8.8.8", False, id="public-v4"),
        pytest.param({"deny_private": True}, "2001:4860:4860::8888", False, id="public-v6"),
        pytest.param({"deny": ["127.0.0.2/32"]}, "2002:7f00:2::1", True, id="6to4"),
        pytest.param({"deny": ["127.0.0.2/32"]}, "64:ff9b::7f00:2", True, id="nat64"),
        pytest.param({"deny": ["127.0.0.2/32"]}, "::127.0.0.2", True, id="ipv4-compatible"),
        pytest.param({"deny": ["127.0.0.2/32"]}, "127.0.0.3", False, id="next-door"),
        pytest.param({"allow": ["10.0.0.0/8"]}, "10.9.9.9", False, id="allowed"),
        pytest.param({"allow": ["10.0.0.0/8"]}, "11.0.0.1", True, id="not-allowed"),
        pytest.param(
            {"allow": ["10.0.0.0/8"], "deny": ["10.0.0.5"]}, "10.0.0.5", True, id="deny-wins"
        ),
        pytest.param({"allow": ["127.0.0.0/8"]}, "::ffff:127.0.0.1", False, id="allow-mapped"),
        # A connect to the unspecified address reaches this host: judged as loopback.
        pytest.param({"deny": ["127.0.0.0/8"]}, "0.0.0.0", True, id="unspecified-v4-as-loopback"),
        pytest.param({"deny": ["::1"]}, "::", True, id="unspecified-v6-as-loopback"),
        pytest.param({"allow": ["127.0.0.0/8"]}, "0.0.0.0", False, id="unspecified-allowed"),
        pytest.param({"deny": ["127.0.0.0/8"]}, "::ffff:0.0.0.0", True, id="mapped-unspecified"),
        pytest.param({"deny": ["127.0.0.0/8"]}, "::ffff:0:0", True, id="mapped-unspecified-2"),
    ],
)
def test_policy_table(settings: dict[str, Any], address: str, refused: bool) -> None:
    """Each row: a policy, an address, and whether a connection to it is refused."""
    config = PoolConfig(
        egress_allow=tuple(settings.get("allow", ())),
        egress_deny=tuple(settings.get("deny", ())),
        egress_deny_private=settings.get("deny_private", False),
    )
    policy = EgressPolicy.from_config(config)
    assert policy is not None
    assert (policy.refuses(address) is not None) is refused


def test_no_settings_no_policy() -> None:
    """With no egress setting there is no policy, and nothing is checked per connection."""
    assert EgressPolicy.from_config(PoolConfig()) is None
