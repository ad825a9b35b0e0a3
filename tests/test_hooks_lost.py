"""Hooks that cannot be lost silently: a hook of the user's own that replaces ours, or hooks
left out, are warned of in gunicorn's default log and by ``wsgi-pool explain``; the sizing
line shows without any logging set-up; a bad setting stops gunicorn in one line."""

from __future__ import annotations

import functools
import io
import json
import logging
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, get
from wsgi_pool import gunicorn as hooks
from wsgi_pool._explain import explain, main
from wsgi_pool.testing import GunicornServer, Upstream

IMPORTS = """
from wsgi_pool.gunicorn import (  # noqa: F401
    child_exit, on_starting, post_fork, post_worker_init, worker_abort, worker_exit,
)
"""

OWN_POST_FORK = (
    IMPORTS
    + """
def post_fork(server, worker):  # the user's own, after the import: ours is replaced
    worker.log.info("my own post_fork")
"""
)

COMPOSED = """
from wsgi_pool import gunicorn as wsgi_pool_hooks
from wsgi_pool.gunicorn import (  # noqa: F401
    child_exit, on_starting, post_worker_init, worker_abort, worker_exit,
)

def post_fork(server, worker):
    wsgi_pool_hooks.post_fork(server, worker)
    worker.log.info("my own post_fork")
"""

NO_HOOKS = "workers = 1\n"

WARNING = re.compile(r"these gunicorn hooks of wsgi_pool did not run: ([a-z_, ]+)\.")


def conf(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gunicorn.conf.py"
    path.write_text(text)
    return str(path)


def serve(tmp_path: Path, text: str, upstream: Upstream) -> tuple[dict[str, object], str]:
    """One worker, gthread with 16 threads, gunicorn's default logging: the pools' repr after
    a request, and the log."""
    flags = ["-c", conf(tmp_path, text), "-k", "gthread", "--threads", "16", "-w", "1"]
    env = {"UPSTREAM_URL": upstream.url}
    with GunicornServer("tests.apps:app", flags, env=env, cwd=str(ROOT)) as server:
        status, body = get(server, "/_stats")
        assert status == 200
        server.stop()
        return json.loads(body), server.log()


def test_a_replaced_post_fork_still_sizes_and_is_warned_of(
    tmp_path: Path, upstream: Upstream
) -> None:
    """post_worker_init records the concurrency ours would have: 16 connections, and a
    warning on the first request names the lost hook. The sizing line is in gunicorn's log."""
    found, log = serve(tmp_path, OWN_POST_FORK, upstream)
    assert "pool_maxsize=16" in str(found["repr"])
    assert WARNING.findall(log) == ["post_fork"]
    assert re.search(r"\[INFO\] wsgi_pool: pools for pid \d+: pool_maxsize=16", log)
    assert "my own post_fork" in log


def test_no_hooks_at_all_is_warned_of(tmp_path: Path, upstream: Upstream) -> None:
    found, log = serve(tmp_path, NO_HOOKS, upstream)
    assert "pool_maxsize=10" in str(found["repr"])
    assert WARNING.findall(log) == ["on_starting, post_fork, post_worker_init"]
    assert "without gunicorn's concurrency (requests' default pool_maxsize=10)" in log


def test_a_hook_that_calls_ours_is_no_loss(tmp_path: Path, upstream: Upstream) -> None:
    found, log = serve(tmp_path, COMPOSED, upstream)
    assert "pool_maxsize=16" in str(found["repr"])
    assert WARNING.findall(log) == []
    assert "my own post_fork" in log


def test_a_bad_setting_stops_gunicorn_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", conf(tmp_path, IMPORTS), "tests.apps:app"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "WSGI_POOL_THREADS": "abc"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Error: wsgi_pool: WSGI_POOL_THREADS='abc': invalid literal for int()" in done.stderr
    assert "Traceback" not in done.stderr


def test_explain_checks_the_hooks_as_a_worker_would(tmp_path: Path) -> None:
    """A replaced post_fork is a warning (the sizing holds: post_worker_init records it); with
    no hooks the sizing shown is the one the workers really get."""
    replaced = explain(["-c", conf(tmp_path, OWN_POST_FORK), "-k", "gthread", "--threads", "16"])
    assert replaced.sizing.pool_maxsize == 16
    assert replaced.notes == (
        "post_fork is a hook of your own that does not call wsgi_pool's: pools made while the "
        "app is imported are sized without the worker's concurrency (call "
        "wsgi_pool.gunicorn.post_fork from it)",
    )
    composed = explain(["-c", conf(tmp_path, COMPOSED), "-k", "gthread", "--threads", "16"])
    assert composed.notes == ()
    none = explain(["-c", conf(tmp_path, NO_HOOKS), "-k", "gthread", "--threads", "16"])
    assert none.sizing.pool_maxsize == 10
    assert [w.split(" ")[0] for w in none.notes] == hooks.__all__  # every one is missing
    out = io.StringIO()
    assert main(["explain", "-c", conf(tmp_path, NO_HOOKS)], out) == 0
    text = out.getvalue()
    assert "- post_fork is not in the configuration:" in text
    assert "Not seen: settings given in code" in text


def test_explain_without_gunicorn_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util  # noqa: PLC0415

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gunicorn" else real(name)
    )
    assert main(["explain"]) == 2
    assert capsys.readouterr().err == (
        "wsgi-pool explain: reads a gunicorn configuration, and gunicorn is not installed: "
        "pip install 'wsgi_pool[gunicorn]'\n"
    )


def _decorated(hook: Any) -> Any:
    @functools.wraps(hook)
    def wrapper(*args: Any) -> Any:
        return hook(*args)

    return wrapper


def test_hooks_that_call_ours_in_every_way_are_seen() -> None:
    """A decorator around ours, functools.partial, an import inside the hook, a function
    defined inside it: each calls ours. A callable object says nothing: it is yours."""
    from wsgi_pool._explain import calls  # noqa: PLC0415

    ours = hooks.post_fork

    def importing(server: Any, worker: Any) -> None:
        from wsgi_pool.gunicorn import post_fork as theirs  # noqa: PLC0415

        theirs(server, worker)

    def nesting(server: Any, worker: Any) -> None:
        def inner() -> None:
            hooks.post_fork(server, worker)

        inner()

    def unrelated(server: Any, worker: Any) -> None:
        print(server, worker)

    class Callable:
        def __call__(self, server: Any, worker: Any) -> None:
            pass

    for hook in (_decorated(ours), functools.partial(ours), importing, nesting):
        assert calls(hook, ours, hooks), hook
    assert not calls(unrelated, ours, hooks)
    assert not calls(Callable(), ours, hooks)


def test_on_starting_says_what_preload_built_and_warns_of_unwise_settings(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """In the master: pools a preloaded app built at import, and several workers with metrics
    but no multiprocess directory, are warned of."""
    from gunicorn.config import Config  # noqa: PLC0415

    import wsgi_pool  # noqa: PLC0415

    cfg = Config()
    cfg.set("workers", 2)
    monkeypatch.setenv("WSGI_POOL_METRICS_PATH", "/metrics")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    wsgi_pool.client().pools  # noqa: B018  (a call at the preloaded app's import)
    with caplog.at_level(logging.WARNING, "wsgi_pool"):
        hooks.on_starting(types.SimpleNamespace(cfg=cfg))
    text = caplog.text
    assert "pools built in the gunicorn master" in text
    assert "Prometheus metrics with 2 workers and no PROMETHEUS_MULTIPROC_DIR" in text
