"""Fork safety: a process finds only its own pools; what a child inherits is set aside, never used."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import textwrap

import pytest
import requests

import wsgi_pool
from tests.support import wait_until
from wsgi_pool import (
    Client,
    PoolConfig,
    WorkerPools,
    _process,
)
from wsgi_pool._servers import ServerReport
from wsgi_pool.testing import Upstream


@pytest.fixture
def fake_pid(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The registry's process-id source, replaced so a test can fake a fork."""
    pid = [os.getpid()]
    monkeypatch.setattr(_process, "getpid", lambda: pid[0])
    monkeypatch.setattr(_process, "marked_pid", lambda: pid[0])
    return pid


@pytest.fixture
def parent(upstream: Upstream) -> tuple[Client, WorkerPools]:
    """A client of this process, and its pools, with one idle connection to the upstream."""
    http = wsgi_pool.client()
    http.get(f"{upstream.url}/parent")
    return http, http.pools


def test_a_changed_process_id_gets_new_pools_and_leaves_the_old_ones_open(
    upstream: Upstream, fake_pid: list[int], parent: tuple[Client, WorkerPools]
) -> None:
    """After a fork (seen as a new process id) a client builds new pools; inherited ones are set aside open."""
    http, parent_pools = parent
    fake_pid[0] += 100000
    child_pools = http.pools
    assert child_pools is not parent_pools
    assert child_pools.pid == fake_pid[0]
    assert any(parent_pools in held.by_shape.values() for held in _process._inherited)
    assert parent_pools.stats()[upstream.url].idle == 1
    http.get(f"{upstream.url}/child")
    assert upstream.stats().connections_opened == 2
    assert _process.close_process_pools() == 1
    assert parent_pools.stats()[upstream.url].idle == 1


def test_the_at_fork_hook_sets_the_parents_pools_aside(
    upstream: Upstream, fake_pid: list[int], parent: tuple[Client, WorkerPools]
) -> None:
    """os.register_at_fork's child hook moves the parent's pools out of reach without closing them."""
    _, parent_pools = parent
    fake_pid[0] += 300000
    _process._after_fork_in_child()
    assert list(_process._by_pid) == []
    assert any(parent_pools in held.by_shape.values() for held in _process._inherited)
    assert parent_pools.stats()[upstream.url].idle == 1


def test_a_process_that_made_no_pools_imports_nothing_when_forked(
    fake_pid: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The at-fork hook in a process that never made pools (their module not imported): it
    sets nothing aside and imports nothing (requests would load in the middle of a fork)."""
    monkeypatch.delitem(sys.modules, "wsgi_pool._worker")
    fake_pid[0] += 300000
    _process._after_fork_in_child()
    assert "wsgi_pool._worker" not in sys.modules


def test_close_process_pools_without_pools_closes_nothing(fake_pid: list[int]) -> None:
    """Closing in a process that never built pools does nothing."""
    fake_pid[0] += 200000
    assert _process.close_process_pools() == 0


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_children_never_get_each_others_answers(upstream: Upstream) -> None:
    """Two children forked after the parent warmed its pool each get only their own answers, on their own sockets."""
    http = wsgi_pool.client()
    parent = str(os.getpid())
    assert http.get(f"{upstream.url}/warm", headers={"X-Caller-Pid": parent}).status_code == 200
    children: list[tuple[int, int]] = []
    for _ in range(2):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if (
            pid == 0
        ):  # pragma: no cover  (the child's lines are measured by nobody: it leaves with os._exit)
            code = 1
            try:
                os.close(read_end)
                me = str(os.getpid())
                right = 0
                for number in range(40):
                    tag = f"{me}-{number}"
                    answer = http.get(
                        f"{upstream.url}/c", headers={"X-Tag": tag, "X-Caller-Pid": me}
                    ).json()
                    right += answer["tag"] == tag and answer["caller"] == me
                os.write(write_end, str(right).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        children.append((pid, read_end))
    for number in range(40):
        answer = http.get(
            f"{upstream.url}/p", headers={"X-Tag": f"p{number}", "X-Caller-Pid": parent}
        ).json()
        assert answer["tag"] == f"p{number}"
    for pid, read_end in children:
        with os.fdopen(read_end, "rb") as pipe:
            reported = pipe.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert reported == b"40"
    assert upstream.shared_connections() == {}
    assert upstream.stats().connections_opened == 3


def test_the_environment_settings_are_read_once_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WSGI_POOL_* is read once; a later change in the environment does not resize live pools."""
    monkeypatch.setenv("WSGI_POOL_POOL_MAXSIZE", "3")
    first = _process.default_config()
    monkeypatch.setenv("WSGI_POOL_POOL_MAXSIZE", "7")
    assert _process.default_config() is first
    _process.record_server(ServerReport(worker_class="gthread", threads=5))
    assert wsgi_pool.client().pools.sizing.pool_maxsize == 3
    assert wsgi_pool.client().pools.config.threads == 5


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("own", [False, True], ids=["the process's pools", "a caller's own"])
def test_a_forked_child_lets_go_of_the_parents_connections(upstream: Upstream, own: bool) -> None:
    """A child forked while the parent keeps a connection (multiprocessing in a handler) holds
    no copy of it: when the parent closes its pools, the upstream sees the connection close,
    the child still alive. The same for pools a caller made (``Client(pools=WorkerPools(...))``)."""
    pools = WorkerPools(PoolConfig()) if own else None
    http = wsgi_pool.Client(pools=pools)
    http.get(f"{upstream.url}/warm")
    assert upstream.stats().open_connections == 1
    release, hold = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover  (the child: waits, and leaves without cleanup)
        os.close(hold)
        os.read(release, 1)
        os._exit(0)
    os.close(release)
    try:
        if pools is None:
            _process.close_process_pools()
        else:
            pools.close()
        assert wait_until(lambda: upstream.stats().open_connections == 0, timeout=3)
    finally:
        os.write(hold, b"x")
        os.close(hold)
        os.waitpid(child, 0)


def test_releasing_copies_closes_only_this_processs_descriptors(upstream: Upstream) -> None:
    """What a forked child runs, run here on pools marked as another process's: each open
    connection's descriptor is closed here (detached first, so nothing closes it twice); pools
    of this process are left alone."""
    http = wsgi_pool.client()
    http.get(f"{upstream.url}/warm")
    own = http.pools
    assert own.release_copies() == 0  # this process's own: untouched
    foreign = wsgi_pool.WorkerPools(PoolConfig(), pid=os.getpid() + 100000)
    with wsgi_pool.Client(pools=foreign) as copy:
        copy.pools  # noqa: B018  (the pools as this client sees them)
        answer = foreign.adapter.send(requests.Request("GET", f"{upstream.url}/copy").prepare())
        assert answer.content  # read: its connection is back in the pool, idle
    assert foreign.release_copies() == 1
    assert foreign.release_copies() == 0  # detached: never closed twice
    assert wait_until(lambda: upstream.stats().open_connections == 1)  # ours stays open
    foreign.close()


def test_the_at_fork_hook_releases_every_inherited_set_of_pools(upstream: Upstream) -> None:
    """What runs in a forked child, run here on pools marked as another process's (a caller's
    own, which the registry never knew): they are retired and their sockets released; this
    process's own are left alone."""
    from wsgi_pool import _worker  # noqa: PLC0415

    http = wsgi_pool.client()
    http.get(f"{upstream.url}/warm")
    foreign = wsgi_pool.WorkerPools(PoolConfig(), pid=os.getpid() + 100000)
    answer = foreign.adapter.send(requests.Request("GET", f"{upstream.url}/copy").prepare())
    assert answer.content
    assert wait_until(lambda: upstream.stats().open_connections == 2)
    _worker.release_inherited(os.getpid())
    assert foreign.retired
    assert not http.pools.retired
    assert wait_until(lambda: upstream.stats().open_connections == 1)  # ours stays open
    foreign.close()


def test_releasing_copies_reaches_the_socket_of_a_closing_response(upstream: Upstream) -> None:
    """A streamed response that closes its connection (``Connection: close``): http.client has
    let go of the socket, which the response still reads; a forked child's release closes its
    copy all the same."""
    foreign = wsgi_pool.WorkerPools(PoolConfig(), pid=os.getpid() + 100000)
    request = requests.Request("GET", f"{upstream.url}/closing?close=1").prepare()
    response = foreign.adapter.send(request, stream=True)
    assert response.headers["Connection"] == "close"
    assert foreign.release_copies() == 1
    assert wait_until(lambda: upstream.stats().open_connections == 0)
    response.close()
    foreign.close()


def test_a_child_forgets_the_parents_watchdog() -> None:
    """After a fork the child makes its own watchdog (the parent's thread is not in it)."""
    from wsgi_pool import _deadline  # noqa: PLC0415

    parent = _deadline.watchdog()
    _deadline._forget_after_fork()  # as the at-fork hook does in a child
    child = _deadline.watchdog()
    assert child is not parent
    parent.close()


def test_a_child_forked_without_pythons_hooks_builds_its_own_pools(upstream: Upstream) -> None:
    """A fork that runs none of Python's fork hooks (libc's fork called directly, as a C
    extension or uWSGI without ``py-call-osafterfork`` forks) is still seen: the child's
    calls go out on connections of its own, and the parent's pool is left as it was."""
    code = textwrap.dedent(
        f"""
        import ctypes, os, sys
        import wsgi_pool
        from wsgi_pool import _process

        http = wsgi_pool.client()
        http.get("{upstream.url}/parent")
        parent = http.pools
        pid = ctypes.CDLL(None).fork()
        if pid == 0:
            fresh = _process.marked_pid() in (0, os.getpid())
            http.get("{upstream.url}/child")
            own = http.pools is not parent and http.pools.pid == os.getpid()
            marked = _process.marked_pid() == os.getpid()  # the next calls find them at once
            os._exit(0 if fresh and own and marked else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert http.pools is parent and parent.stats()["{upstream.url}"].idle == 1
        print("ok", _process._mark is not None)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    marked = sys.platform == "linux"  # where the kernel empties the mark in a child
    assert done.stdout.split() == ["ok", str(marked)]
    assert upstream.stats().connections_opened == 2


def test_without_a_mark_the_process_id_is_asked_of_the_system(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the kernel takes no such advice (or Python cannot name it), the fork check asks
    the process id of the system on every call."""
    monkeypatch.delattr(mmap, "MADV_WIPEONFORK", raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _process._fork_mark() == (None, os.getpid)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(_process, "_LINUX_WIPEONFORK", 12345)  # an advice no kernel knows
    assert _process._fork_mark() == (None, os.getpid)


def test_a_mark_the_kernel_left_in_a_child_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that took the advice but left the parent's mark in a child: seen by Python's
    fork hook, and the process id is asked of the system from then on."""
    page = memoryview(bytearray(8)).cast("q")
    page[0] = os.getpid() + 100000  # the parent's
    monkeypatch.setattr(_process, "_mark", page)
    monkeypatch.setattr(_process, "marked_pid", _process.marked_pid)
    _process._after_fork_in_child()
    assert _process._mark is None
    assert _process.marked_pid is os.getpid


def test_without_a_mark_nothing_is_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where there is no page to mark, finding this process's pools marks nothing."""
    monkeypatch.setattr(_process, "_mark", None)
    monkeypatch.setattr(_process, "marked_pid", os.getpid)
    _process._marked(os.getpid())
    assert _process.current(None, None).pid == os.getpid()
