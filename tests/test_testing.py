"""The public testing helpers behave as documented: they start, count, and always stop."""

from __future__ import annotations

import os
import signal

import pytest
import requests

from tests.support import ROOT, wait_until
from wsgi_pool.testing import GunicornServer, Upstream


def test_upstream_on_ipv6_loopback() -> None:
    """An upstream on ::1 serves and its URL brackets the address."""
    with Upstream(host="::1") as server:
        assert server.url.startswith("http://[::1]:")
        assert requests.get(f"{server.url}/six", timeout=5).json()["path"] == "/six"


def test_an_upstream_never_started_stops_at_once() -> None:
    """stop() on an upstream that never started returns without waiting for a server loop."""
    server = Upstream()
    server.stop()
    with pytest.raises(OSError, match="Bad file descriptor"):
        server._server.socket.getsockname()


def test_a_failing_handler_drops_that_connection_and_keeps_serving(
    upstream: Upstream, capsys: pytest.CaptureFixture[str]
) -> None:
    """A request the handler cannot answer closes its connection; the server is reported and goes on."""
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{upstream.url}/bad?delay=not-a-number", timeout=5)
    assert requests.get(f"{upstream.url}/fine", timeout=5).status_code == 200
    assert "could not convert string to float" in capsys.readouterr().err
    assert upstream.stats().max_in_flight == 1  # the failed one no longer counted in flight


def test_gunicorn_that_is_not_ready_in_time_is_stopped() -> None:
    """start() with no time to become ready stops gunicorn and says so."""
    server = GunicornServer("examples.plain_wsgi:app", ["-w", "1"], cwd=str(ROOT))
    with pytest.raises(RuntimeError, match="did not accept connections within 0 s"):
        server.start(ready_within=0)
    assert server.process is not None
    assert server.process.returncode is not None


def test_a_forced_stop_kills_master_and_workers(upstream: Upstream) -> None:
    """When gunicorn does not stop within the grace period, master and workers are killed together."""
    server = GunicornServer(
        "examples.plain_wsgi:app", ["-w", "2"], cwd=str(ROOT), env={"UPSTREAM_URL": upstream.url}
    )
    try:
        server.start()
        assert server.process is not None
        group = server.process.pid
        assert wait_until(lambda: len(living_members(group)) == 3), "master and two workers"
        assert server.stop(within=0.0) == -signal.SIGKILL
        assert wait_until(lambda: not living_members(group)), living_members(group)
    finally:
        server.stop()


def living_members(group: int) -> list[int]:
    """Processes of a process group that are neither dead nor zombies (reaped or not)."""
    living = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == group and state not in ("Z", "X"):
            living.append(int(entry))
    return living


def test_a_gunicorn_never_started_stops_at_once() -> None:
    """stop() before start() has no process to stop and reports no exit code."""
    server = GunicornServer("examples.plain_wsgi:app")
    assert server.stop() is None
    assert server.process is None


def test_upstream_detects_a_connection_used_by_two_processes(upstream: Upstream) -> None:
    """The shared-socket detector the fork tests rely on reports a connection seen with two caller ids."""
    with requests.Session() as session:
        session.get(f"{upstream.url}/a", headers={"X-Caller-Pid": "1"}, timeout=5)
        session.get(f"{upstream.url}/b", headers={"X-Caller-Pid": "2"}, timeout=5)
    assert list(upstream.shared_connections().values()) == [{"1", "2"}]


def test_the_pytest_plugin_gives_an_upstream_and_fresh_pools(pytester: pytest.Pytester) -> None:
    """A user's test suite with ``pytest_plugins = ["wsgi_pool.pytest_plugin"]``: the
    ``upstream`` fixture serves canned answers and records what was sent; ``fresh_pools``
    starts each test with no pools, so one test's statistics never show in the next."""
    pytester.makeconftest('pytest_plugins = ["wsgi_pool.pytest_plugin"]\n')
    pytester.makepyfile(
        """
        import wsgi_pool

        def test_a_view_call(upstream, fresh_pools):
            upstream.answer("/items/1", json={"id": 1}, headers={"X-From": "canned"})
            with wsgi_pool.client() as http:
                answer = http.get(upstream.url + "/items/1?full=1", headers={"X-Tag": "t"})
            assert answer.json() == {"id": 1}
            assert answer.headers["X-From"] == "canned"
            (sent,) = upstream.seen("/items/1")
            assert (sent.method, sent.path, sent.headers["X-Tag"]) == ("GET", "/items/1?full=1", "t")
            assert wsgi_pool.client().pools.stats()[upstream.url].calls == 1
            assert wsgi_pool.client().head(upstream.url + "/items/1").content == b""

        def test_the_next_one_starts_afresh(upstream, fresh_pools):
            assert wsgi_pool.client().pools.stats() == {}
            upstream.answer("/text", body="plain", status=201)
            with wsgi_pool.client() as http:
                answer = http.post(upstream.url + "/text", json={"a": 1})
            assert (answer.status_code, answer.text) == (201, "plain")
            assert upstream.seen()[0].json() == {"a": 1}
            upstream.reset()
            assert upstream.seen() == []
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
