"""Worker classes beyond gthread, under real gunicorn: gevent (200 greenlets over a pool of 10) and tornado."""

from __future__ import annotations

import json
import os
import signal
import sys
import types
from pathlib import Path

import pytest

import wsgi_pool
from tests.support import CONF, ROOT, get, run_together, wait_for_sizing_lines, wait_until
from wsgi_pool.testing import GunicornServer, Upstream


def test_gevent_200_greenlets_share_a_pool_of_10(upstream: Upstream) -> None:
    """-k gevent, 200 concurrent requests each holding an upstream call: all answered, 10 connections."""
    env = {"UPSTREAM_URL": upstream.url, "WSGI_POOL_POOL_MAXSIZE": "10"}
    flags = ["-c", CONF, "-k", "gevent", "-w", "1", "--worker-connections", "200"]
    with GunicornServer("tests.apps:app", flags, env=env, cwd=str(ROOT)) as server:
        (sizing,) = wait_for_sizing_lines(server, 1)
        upstream.reset()
        statuses = run_together(*[lambda: get(server, "/fleet")[0]] * 200, timeout=120)
        stats = upstream.stats()
    assert "pool_maxsize=10 (set explicitly)" in sizing[1]
    assert statuses == [200] * 200
    assert stats.requests_served == 200
    assert stats.connections_opened <= 10
    assert stats.max_in_flight <= 10


def test_gevent_is_sized_from_worker_connections_with_a_cap(upstream: Upstream) -> None:
    """Without settings, a gevent worker's pool follows worker_connections, capped at 100."""
    flags = ["-c", CONF, "-k", "gevent", "-w", "1", "--worker-connections", "500"]
    with GunicornServer(
        "tests.apps:app", flags, env={"UPSTREAM_URL": upstream.url}, cwd=str(ROOT)
    ) as server:
        (sizing,) = wait_for_sizing_lines(server, 1)
        status, _ = get(server, "/?tag=g")
    assert status == 200
    assert "pool_maxsize=100 (gevent worker: worker_connections=500 capped at 100)" in sizing[1]


def test_gevent_statistics_metrics_and_the_abort_log_work(upstream: Upstream) -> None:
    """-k gevent (whose pool queue has no mutex): statistics, repr and /metrics answer, and
    an aborted worker logs its pools instead of raising."""
    env = {"UPSTREAM_URL": upstream.url, "WSGI_POOL_METRICS_PATH": "/metrics"}
    flags = ["-c", CONF, "-k", "gevent", "-w", "1"]
    with GunicornServer("tests.apps:app", flags, env=env, cwd=str(ROOT)) as server:
        ((pid, _),) = wait_for_sizing_lines(server, 1)
        assert get(server, "/?tag=g")[0] == 200
        status, body = get(server, "/_stats")
        assert status == 200
        found = json.loads(body)
        assert found["stats"][upstream.url]["calls"] == 3
        assert found["repr"].startswith(f"<WorkerPools pid={pid} ")
        status, body = get(server, "/metrics")
        assert status == 200
        assert f'wsgi_pool_connections_opened_total{{upstream="{upstream.url}"}}'.encode() in body
        os.kill(int(pid), signal.SIGABRT)
        assert wait_until(
            lambda: f"worker {pid} aborted (timeout?) with <WorkerPools" in server.log()
        )
    assert "worker_abort" not in server.log()  # gunicorn names a hook only when it raised


def test_tornado_worker_keeps_one_connection(upstream: Upstream) -> None:
    """-k tornado runs one WSGI call at a time: one connection per upstream, reused."""
    flags = ["-c", CONF, "-k", "tornado", "-w", "1"]
    with GunicornServer(
        "tests.apps:app", flags, env={"UPSTREAM_URL": upstream.url}, cwd=str(ROOT)
    ) as server:
        (sizing,) = wait_for_sizing_lines(server, 1)
        answers = [get(server, f"/?tag=t{i}")[0] for i in range(5)]
    assert answers == [200] * 5
    assert "pool_maxsize=1 (tornado worker: one WSGI call at a time)" in sizing[1]
    assert upstream.stats().connections_opened == 1


class Waitress(GunicornServer):
    """waitress serving the app in a subprocess (threads, no fork)."""

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "waitress",
            f"--listen={self.host}:{self.port}",
            *self.args,
            self.app,
        ]


class Werkzeug(GunicornServer):
    """werkzeug's development server (a thread per request) in a subprocess."""

    def command(self) -> list[str]:
        module, name = self.app.split(":")
        script = (
            "import importlib, sys; from werkzeug.serving import run_simple; "
            f"run_simple({self.host!r}, {self.port}, getattr(importlib.import_module({module!r}), {name!r}), threaded=True)"
        )
        return [sys.executable, "-c", script]


@pytest.mark.parametrize(
    ("server", "args", "most"),
    [
        pytest.param(Waitress, ["--threads=4"], 4, id="waitress: its 4 threads"),
        pytest.param(Werkzeug, [], 10, id="werkzeug: a thread per request, the default pool of 10"),
    ],
)
def test_threaded_servers_without_fork_share_one_pool(
    upstream: Upstream, server: type[GunicornServer], args: list[str], most: int
) -> None:
    """waitress and werkzeug: 16 concurrent requests answered right over at most ``most`` connections."""
    env = {"UPSTREAM_URL": upstream.url}
    with server("tests.apps:app", args, env=env, cwd=str(ROOT)) as running:
        upstream.reset()
        statuses = run_together(*[lambda: get(running, "/fleet")[0]] * 16, timeout=60)
        stats = upstream.stats()
        log = running.log()
    assert statuses == [200] * 16
    assert stats.requests_served == 16
    assert stats.connections_opened <= most  # no hooks tell these servers' size: the default pool
    assert "Connection pool is full" not in log


class UWSGI(GunicornServer):
    """uWSGI in a subprocess: a master, 2 processes x 4 threads, the app loaded in the master
    before fork (uWSGI's default); ``args`` add options such as ``--py-call-osafterfork``."""

    def command(self) -> list[str]:
        return [
            str(Path(sys.executable).parent / "uwsgi"),
            f"--http-socket={self.host}:{self.port}",
            "--master",
            "--processes=2",
            "--threads=4",
            f"--virtualenv={sys.prefix}",
            f"--chdir={self.cwd}",
            f"--module={self.app}",
            "--die-on-term",
            "--need-app",
            *self.args,
        ]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="fork without Python's at-fork hooks"),
        pytest.param(["--py-call-osafterfork"], id="py-call-osafterfork"),
    ],
)
def test_uwsgi_preloading_shares_no_socket_and_sizes_from_its_threads(
    upstream: Upstream, args: list[str]
) -> None:
    """The master warms a pool before fork; the processes never use its socket, and take 4 each."""
    env = {"UPSTREAM_URL": upstream.url, "WARM_IN_MASTER": "1"}
    with UWSGI("tests.apps:app", args, env=env, cwd=str(ROOT)) as server:
        answers = run_together(*[lambda: get(server, "/?tag=u")] * 16, timeout=60)
        sizes = [json.loads(get(server, "/_pools")[1]) for _ in range(8)]
        stats = upstream.stats()
        shared = upstream.shared_connections()
    bodies = [json.loads(body) for status, body in answers if status == 200]
    assert [body["answers"] for body in bodies] == [["u", "u", "u"]] * 16
    assert len({body["pid"] for body in bodies}) == 2  # both processes served
    assert shared == {}  # no connection carried requests of two processes
    assert {size["pool_maxsize"] for size in sizes} == {4}  # uWSGI's --threads=4
    assert stats.connections_opened <= 1 + 2 * 4  # the master's, and 4 per process at most


def test_uwsgi_options_give_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside uWSGI (its ``uwsgi`` module, faked here) the pools follow ``uwsgi.opt['threads']``."""
    from wsgi_pool import _process  # noqa: PLC0415
    from wsgi_pool._servers import uwsgi_report as uwsgi_concurrency  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "uwsgi", types.SimpleNamespace(opt={"threads": b"6"}))
    assert wsgi_pool.client().pools.sizing.pool_maxsize == 6
    _process.close_process_pools()
    assert uwsgi_concurrency({}).threads == 1
    assert uwsgi_concurrency({"threads": [b"2", b"3"]}).threads == 3
    assert uwsgi_concurrency({"threads": True}).threads == 1
