"""gunicorn's worker lifecycle with outbound calls in flight: recycling, shutdown, timeouts."""

from __future__ import annotations

import threading
from urllib.parse import quote

from examples.demo import Phase, drive
from tests.faults import FaultServer
from tests.harness import never_answer
from tests.support import CONF, ROOT, SIZING, get, wait_for_sizing_lines, wait_until
from wsgi_pool.testing import GunicornServer, Upstream


def test_max_requests_recycles_workers_without_failing_a_call(upstream: Upstream) -> None:
    """--max-requests 25 under load: workers recycle, every call succeeds, every socket is closed."""
    flags = ["-c", CONF, "-k", "gthread", "-w", "2", "--threads", "4", "--max-requests", "25"]
    with GunicornServer(
        "tests.apps:app", flags, env={"UPSTREAM_URL": upstream.url}, cwd=str(ROOT)
    ) as server:
        phase = Phase(name="recycling", route="/")
        drive(server.url, phase, total=300, clients=4, calls=3)
        code = server.stop()
    assert (phase.requests, phase.errors, phase.wrong_answers) == (300, 0, 0)
    assert code == 0
    assert len(SIZING.findall(server.log())) > 4  # workers were replaced several times
    assert "Autorestarting worker" in server.log()
    assert wait_until(lambda: upstream.stats().open_connections == 0)


def test_sigterm_with_calls_in_flight_is_graceful(upstream: Upstream) -> None:
    """SIGTERM while four calls wait on a slow upstream: all four answer, then the pools close."""
    flags = ["-c", CONF, "-k", "gthread", "-w", "1", "--threads", "4"]
    with GunicornServer(
        "tests.apps:app", flags, env={"UPSTREAM_URL": upstream.url}, cwd=str(ROOT)
    ) as server:
        wait_for_sizing_lines(server, 1)
        results: list[tuple[int, bytes]] = []
        callers = [
            threading.Thread(target=lambda: results.append(get(server, "/slow"))) for _ in range(4)
        ]
        for caller in callers:
            caller.start()
        assert wait_until(lambda: upstream.stats().max_in_flight >= 4)
        code = server.stop()
        for caller in callers:
            caller.join(30)
    assert [status for status, _ in results] == [200] * 4
    assert code == 0
    assert wait_until(lambda: upstream.stats().open_connections == 0)


def test_sync_worker_call_ends_before_the_worker_timeout() -> None:
    """A sync worker (timeout 3 s) calling a silent upstream answers 504 itself, and is not killed."""
    with FaultServer(never_answer) as silent:
        flags = ["-c", CONF, "-k", "sync", "--threads", "1", "-w", "1", "--timeout", "3"]
        with GunicornServer("tests.apps:app", flags, cwd=str(ROOT)) as server:
            status, body = get(server, f"/call?url={quote(silent.url)}/x")
            server.stop()
    assert status == 504
    assert body.startswith(b"DeadlineExceeded: " + silent.url.encode())
    assert b"deadline of 2.25 s" in body
    assert "WORKER TIMEOUT" not in server.log()
    assert "deadline=2.25 (3/4 of the worker timeout of 3 s)" in server.log()


def test_worker_abort_leaves_no_broken_pool(upstream: Upstream) -> None:
    """A deadline above the sync timeout gets the worker killed; the warning said so; the next worker works."""
    with FaultServer(never_answer) as silent:
        flags = ["-c", CONF, "-k", "sync", "--threads", "1", "-w", "1", "--timeout", "2"]
        env = {"UPSTREAM_URL": upstream.url, "WSGI_POOL_DEADLINE": "20"}
        with GunicornServer("tests.apps:app", flags, env=env, cwd=str(ROOT)) as server:
            try:
                first = get(server, f"/call?url={quote(silent.url)}/x")[0]
            except ConnectionError:  # the worker was killed mid-request: no response at all
                first = 0
            status, body = get(server, "/?tag=after")
            server.stop()
    log = server.log()
    assert first in {0, 500, 502}
    assert status == 200
    assert b'"after"' in body
    assert "WORKER TIMEOUT" in log
    assert "is not below the worker timeout of 2 s" in log
    assert "aborted (timeout?) with <WorkerPools" in log
