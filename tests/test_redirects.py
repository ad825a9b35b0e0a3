"""Redirects never carry credentials, caller headers or bodies to another origin, nor go https -> http.

Distinct origins on this machine: two ports of 127.0.0.1, and 127.0.0.2. Each leak is first
shown with a plain ``requests.Session`` (the control), then shown closed with wsgi_pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote
from wsgiref.util import setup_testing_defaults

import pytest
import requests
from requests.auth import HTTPDigestAuth

import wsgi_pool
from tests.faults import FaultServer, Peer
from wsgi_pool import (
    Client,
    PoolConfig,
    PoolMiddleware,
    RedirectRefused,
    TooManyRedirects,
    UpstreamSettings,
)
from wsgi_pool.testing import Upstream

SECRETS = {"X-Api-Key": "k-123", "Authorization": "Bearer t-456", "X-Tenant": "acme"}


def redirect(server: Upstream, target: str, status: int = 302) -> str:
    """A URL on ``server`` that answers ``status`` with ``Location: target``."""
    return f"{server.url}/r?status={status}&location={quote(target, safe='')}"


@pytest.fixture
def other_host() -> Iterator[Upstream]:
    with Upstream("127.0.0.2") as server:
        yield server


def test_requests_sends_caller_headers_to_another_origin(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """The control: a plain Session carries X-Api-Key to the new origin (it strips only Authorization)."""
    with requests.Session() as session:
        answer = session.get(
            redirect(upstream, f"{second_upstream.url}/landed"), headers=SECRETS, timeout=5
        ).json()
    assert answer["headers"]["X-Api-Key"] == "k-123"


@pytest.mark.parametrize("target", ["second_upstream", "other_host"])
def test_a_cross_origin_hop_carries_only_the_allowed_headers(
    upstream: Upstream, target: str, request: pytest.FixtureRequest
) -> None:
    """To another port or host: no credentials, cookies or caller headers; Accept and User-Agent go on."""
    server: Upstream = request.getfixturevalue(target)
    http = wsgi_pool.client()
    answer = http.get(
        redirect(upstream, f"{server.url}/landed"),
        headers={**SECRETS, "Accept": "application/json"},
        cookies={"sid": "alice"},
    )
    seen = answer.json()["headers"]
    assert answer.json()["path"] == "/landed"
    assert [r.status_code for r in answer.history] == [302]
    assert not {"X-Api-Key", "Authorization", "X-Tenant", "Cookie"} & set(seen)
    assert seen["Accept"] == "application/json"
    assert seen["User-Agent"].startswith("python-requests/")


def test_each_hop_lists_the_hops_before_it_as_requests_does(upstream: Upstream) -> None:
    """A -> B -> C: the answer's history is [A, B], and each hop's own history is the hops
    before it (B's is [A], never itself), compared with requests' own session."""
    chain = redirect(upstream, redirect(upstream, "/c"))

    def shape(answer: requests.Response) -> list[list[str]]:
        return [
            [hop.url for hop in answer.history],
            *[[h.url for h in hop.history] for hop in answer.history],
        ]

    with requests.Session() as session:
        expected = shape(session.get(chain, timeout=5))
    got = shape(wsgi_pool.client().get(chain))
    assert got == expected
    assert len(got[0]) == 2
    assert got[2] == [got[0][0]]


def test_the_call_cookies_stay_behind_on_later_hops(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """A -> B -> B: the call's cookies for A are not picked up again by the hop within B."""
    within_b = redirect(second_upstream, "/landed")
    answer = wsgi_pool.client().get(redirect(upstream, within_b), cookies={"sid": "alice"})
    assert [r.status_code for r in answer.history] == [302, 302]
    assert answer.json()["path"] == "/landed"
    assert answer.json()["cookie"] is None


def test_the_headers_that_cross_origins_are_configurable(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """redirect_headers lists what may cross: here X-Tenant goes on, the credentials still do not."""
    http = wsgi_pool.client(PoolConfig(redirect_headers=("X-Tenant",)))
    seen = http.get(redirect(upstream, f"{second_upstream.url}/x"), headers=SECRETS).json()
    assert seen["headers"]["X-Tenant"] == "acme"
    assert "X-Api-Key" not in seen["headers"]
    assert "Authorization" not in seen["headers"]
    assert "Accept" not in seen["headers"]


def test_a_same_origin_hop_keeps_headers_and_cookies(upstream: Upstream) -> None:
    """Within one origin a redirect behaves as in requests: headers, auth and cookies go on."""
    http = wsgi_pool.client()
    seen = http.get(
        redirect(upstream, "/landed?set_cookie=x=1"), headers=SECRETS, cookies={"sid": "alice"}
    ).json()
    assert seen["path"] == "/landed?set_cookie=x=1"
    assert seen["headers"]["X-Api-Key"] == "k-123"
    assert seen["headers"]["Authorization"] == "Bearer t-456"
    assert seen["cookie"] == "sid=alice"


def test_a_cookie_set_by_the_redirect_goes_to_the_same_origin(upstream: Upstream) -> None:
    """A cookie the redirecting response sets is sent on the next hop within the origin."""
    http = wsgi_pool.client()
    first = redirect(upstream, "/landed") + "&set_cookie=step=1"
    assert http.get(first).json()["cookie"] == "step=1"


def test_a_307_body_never_goes_to_another_origin(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """requests re-sends a 307 POST body to the new origin; wsgi_pool refuses the hop."""
    target = redirect(upstream, f"{second_upstream.url}/steal", status=307)
    with requests.Session() as session:  # the control
        assert session.post(target, data=b"card=4242", timeout=5).json()["body_length"] == 9
    second_upstream.reset()
    with pytest.raises(RedirectRefused, match="would send the request body to another origin"):
        wsgi_pool.client().post(target, data=b"card=4242")
    assert second_upstream.stats().requests_served == 0


def test_a_307_body_is_sent_again_within_the_origin(upstream: Upstream) -> None:
    """A 307 to the same origin re-sends the method and body, as the status requires."""
    seen = wsgi_pool.client().post(redirect(upstream, "/again", 307), data=b"abc").json()
    assert (seen["method"], seen["path"], seen["body_length"]) == ("POST", "/again", 3)


def test_a_302_post_becomes_a_get_without_its_body(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """A 302 after a POST is followed as a GET, with no body and no body headers."""
    seen = (
        wsgi_pool.client()
        .post(redirect(upstream, f"{second_upstream.url}/next"), data=b"abc")
        .json()
    )
    assert (seen["method"], seen["body_length"]) == ("GET", 0)
    assert "Content-Type" not in seen["headers"]


def test_https_to_http_is_never_followed(
    https_upstream: Upstream, ca_file: str, upstream: Upstream
) -> None:
    """A redirect from https to http raises RedirectRefused; the http upstream sees nothing."""
    server = https_upstream
    http = wsgi_pool.client(PoolConfig(ca_bundle=ca_file))
    with pytest.raises(RedirectRefused, match="from https to http") as caught:
        http.get(redirect(server, f"{upstream.url}/plain"), headers=SECRETS)
    assert caught.value.upstream == server.url
    assert caught.value.response is not None
    assert upstream.stats().requests_served == 0


def test_http_to_https_is_followed_as_another_origin(
    https_upstream: Upstream, ca_file: str, upstream: Upstream
) -> None:
    """An upgrade to https is followed, as a hop to another origin."""
    server = https_upstream
    http = wsgi_pool.client(PoolConfig(ca_bundle=ca_file))
    seen = http.get(redirect(upstream, f"{server.url}/secure"), headers=SECRETS).json()
    assert seen["path"] == "/secure"
    assert "X-Api-Key" not in seen["headers"]


def test_a_redirect_to_another_scheme_is_refused(upstream: Upstream) -> None:
    """A Location with a scheme other than http(s) raises RedirectRefused."""
    with pytest.raises(RedirectRefused, match="redirect to a file URL"):
        wsgi_pool.client().get(redirect(upstream, "file:///etc/passwd"))


def test_the_hop_limit(upstream: Upstream) -> None:
    """More than max_redirects hops raise TooManyRedirects (also requests'); a client may lower it."""
    chain = f"{upstream.url}/end"
    for _ in range(3):
        chain = redirect(upstream, chain)
    assert len(wsgi_pool.client(PoolConfig(max_redirects=3)).get(chain).history) == 3
    with pytest.raises(TooManyRedirects, match="more than 2 redirects") as caught:
        wsgi_pool.client(PoolConfig(max_redirects=2)).get(chain)
    assert isinstance(caught.value, requests.exceptions.TooManyRedirects)
    lowered = wsgi_pool.client(PoolConfig(max_redirects=3))
    lowered.max_redirects = 1
    with pytest.raises(TooManyRedirects, match="more than 1 redirects"):
        lowered.get(chain)


def test_the_next_request_is_shaped_by_the_policy(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """With allow_redirects=False, response.next is the hop as the policy would send it."""
    answer = wsgi_pool.client().get(
        redirect(upstream, f"{second_upstream.url}/n#part"), headers=SECRETS, allow_redirects=False
    )
    hop = answer.next
    assert hop is not None
    assert hop.url == f"{second_upstream.url}/n#part"
    assert "X-Api-Key" not in hop.headers


def digest_challenge(peer: Peer) -> None:
    """Every request is asked for digest credentials."""
    while peer.read_request():
        challenge = 'WWW-Authenticate: Digest realm="r", nonce="n0", qop="auth"'
        peer.respond("401 Unauthorized", b"", (challenge,))


def test_auth_hooks_never_answer_another_origin(upstream: Upstream) -> None:
    """requests' digest auth answers a 401 from the new origin with the credentials; here the hook is dropped."""
    with FaultServer(digest_challenge) as challenger:
        start = redirect(upstream, f"{challenger.url}/there")
        with requests.Session() as session:  # the control
            session.get(start, auth=HTTPDigestAuth("alice", "pw"), timeout=5)
        leaked = [s for s in challenger.requests() if "authorization" in s.headers]
        assert leaked
        assert 'username="alice"' in leaked[0].headers["authorization"]
        challenger.seen.clear()
        answer = wsgi_pool.client().get(start, auth=HTTPDigestAuth("alice", "pw"))
        assert answer.status_code == 401
        assert [s.path for s in challenger.requests()] == ["/there"]
        assert "authorization" not in challenger.requests()[0].headers


def odd_redirect_bodies(peer: Peer) -> None:
    """/big: a redirect with a 1 MB body; /cut: one whose body stops half-way; /stall: one whose body stalls."""
    while seen := peer.read_request():
        if seen.path == "/big":
            peer.respond("302 Found", b"x" * 1_000_000, ("Location: /ok",))
        elif seen.path in {"/cut", "/stall"}:
            peer.send(b"HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 1000\r\n\r\nxx")
            if seen.path == "/stall":
                peer.hold()
            return
        else:
            peer.respond()


def test_redirect_bodies_are_drained_small_and_dropped_large() -> None:
    """A large, cut or stalled redirect body closes its connection unread; each redirect is still followed."""
    with FaultServer(odd_redirect_bodies) as server:
        http = wsgi_pool.client(PoolConfig(read_timeout=0.3))
        big = http.get(f"{server.url}/big")
        assert (big.status_code, big.history[0].content) == (200, b"")
        assert http.get(f"{server.url}/cut").status_code == 200
        stalled = http.get(f"{server.url}/stall")
        assert (stalled.status_code, stalled.history[0].content) == (200, b"")
        assert [s.path for s in server.requests()] == [
            "/big",
            "/ok",
            "/cut",
            "/ok",
            "/stall",
            "/ok",
        ]
        assert server.connections == 4  # /big's, /cut's and /stall's connections were not reused
        http.pools.close()


def test_the_fragment_is_carried_to_a_location_without_one(upstream: Upstream) -> None:
    """As RFC 9110 says, a Location with no fragment inherits the request's."""
    answer = wsgi_pool.client().get(redirect(upstream, "/landed") + "#section")
    assert answer.url == f"{upstream.url}/landed#section"


def test_the_hop_uses_the_proxy_settings_of_its_own_host(
    upstream: Upstream, other_host: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_PROXY is applied to each hop: a redirect to a host it lists goes direct."""
    for name in ("HTTP_PROXY", "ALL_PROXY", "all_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", upstream.url)  # the "proxy" answers the redirect itself
    monkeypatch.setenv("no_proxy", "127.0.0.2")
    http = wsgi_pool.client(PoolConfig(trust_env=True))
    via_proxy = f"http://example.invalid/r?status=302&location={quote(other_host.url + '/direct')}"
    seen = http.get(via_proxy).json()
    assert seen["path"] == "/direct"
    assert (upstream.stats().requests_served, other_host.stats().requests_served) == (1, 1)


def test_propagation_stops_at_an_origin_not_allowed_to_see_it(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """The request id goes to the configured upstream, not to where it redirects."""
    config = PoolConfig(upstreams={upstream.url: UpstreamSettings(propagate=True)})
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        http: Client = wsgi_pool.client_from(environ)
        seen["own"] = http.get(f"{upstream.url}/own").json()["headers"]
        seen["away"] = http.get(redirect(upstream, f"{second_upstream.url}/away")).json()["headers"]
        start_response("200 OK", [])
        return [b""]

    environ: dict[str, Any] = {"HTTP_X_REQUEST_ID": "req-1"}
    setup_testing_defaults(environ)
    PoolMiddleware(app, config)(environ, lambda *a: lambda b: None)
    assert seen["own"]["X-Request-ID"] == "req-1"
    assert "traceparent" in seen["own"]
    assert not {"X-Request-ID", "traceparent", "tracestate"} & set(seen["away"])
