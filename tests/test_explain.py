"""``wsgi-pool explain``: a gunicorn configuration read as gunicorn reads it, each number with its reason."""

from __future__ import annotations

import io
import json
import runpy
import sys
from typing import Any

import pytest

from tests.support import ROOT
from wsgi_pool._explain import explain, main

DEPLOY = str(ROOT / "deploy" / "gunicorn.conf.py")


@pytest.mark.parametrize(
    ("argv", "environ", "maxsize", "per_upstream", "why", "warning"),
    [
        pytest.param(["-c", DEPLOY], {}, 8, 16, "gthread worker with 8 threads", None, id="deploy"),
        pytest.param(["-k", "sync", "-w", "4"], {}, 1, 4, "one request at a time", None, id="sync"),
        pytest.param(
            ["-k", "sync", "--threads", "4", "-w", "3"],
            {},
            4,
            12,
            "gthread worker with 4 threads",
            None,
            id="sync threads",
        ),
        pytest.param(
            ["-k", "gevent", "--worker-connections", "50", "-w", "2"],
            {},
            50,
            100,
            "worker_connections=50",
            None,
            id="gevent",
        ),
        pytest.param(["-k", "gevent"], {}, 100, 100, "capped at 100", None, id="gevent capped"),
        pytest.param(
            ["-k", "gevent"],
            {"WSGI_POOL_POOL_BLOCK": "false"},
            100,
            100,
            "capped at 100",
            "gevent worker with pool_maxsize=100 and pool_block=False",
            id="gevent without a cap",
        ),
        pytest.param(
            ["-k", "gthread", "--threads", "16", "-w", "2"],
            {"WSGI_POOL_POOL_BLOCK": "false", "WSGI_POOL_POOL_MAXSIZE": "4"},
            4,
            8,
            "set explicitly",
            "16 concurrent requests per worker over pool_maxsize=4 with pool_block=False",
            id="threads over a non-blocking pool",
        ),
        pytest.param(
            ["--timeout", "10"],
            {"WSGI_POOL_DEADLINE": "15"},
            1,
            1,
            "one request at a time",
            "deadline=15 s is not below the worker timeout of 10 s",
            id="deadline above the worker timeout",
        ),
        pytest.param(
            ["-k", "tornado", "-w", "2"], {}, 1, 2, "one WSGI call at a time", None, id="tornado"
        ),
        pytest.param(
            ["-k", "gthread", "--threads", "8", "-w", "4"],
            {"WSGI_POOL_FLEET_CONNECTIONS": "48", "WSGI_POOL_REPLICAS": "3"},
            4,
            16,
            "fleet budget: 48 connections / (3 replicas x 4 workers), below 8",
            None,
            id="fleet budget",
        ),
        pytest.param(
            ["-k", "gthread", "--threads", "2", "-w", "4"],
            {"WSGI_POOL_FLEET_CONNECTIONS": "48", "WSGI_POOL_REPLICAS": "3"},
            2,
            8,
            "gthread worker with 2 threads",
            None,
            id="fleet budget above the need",
        ),
        pytest.param(
            ["-k", "gthread", "--threads", "8", "-w", "4"],
            {"WSGI_POOL_FLEET_CONNECTIONS": "6", "WSGI_POOL_REPLICAS": "3"},
            1,
            4,
            "fleet budget",
            "fleet_connections=6 is less than one connection per worker (3 replicas x 4 workers)",
            id="fleet budget too small",
        ),
        pytest.param(
            ["-k", "gthread", "--threads", "8", "-w", "2"],
            {"WSGI_POOL_FLEET_CONNECTIONS": "8", "WSGI_POOL_POOL_BLOCK": "false"},
            4,
            8,
            "fleet budget",
            "pool_block=False with fleet_connections",
            id="fleet budget without blocking",
        ),
    ],
)
def test_configurations_are_explained(  # noqa: PLR0917  (one parameter per column of the table)
    argv: list[str],
    environ: dict[str, str],
    maxsize: int,
    per_upstream: int,
    why: str,
    warning: str | None,
) -> None:
    """Each configuration gives its pool size, its reason, the server's total and its warnings."""
    found = explain(argv, environ)
    assert found.sizing.pool_maxsize == maxsize
    assert why in found.sizing.reasons["pool_maxsize"]
    assert found.per_upstream == per_upstream
    if warning is None:
        assert found.sizing.warnings == ()
    else:
        assert any(warning in text for text in found.sizing.warnings), found.sizing.warnings


def test_gunicorn_precedence_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The file, then GUNICORN_CMD_ARGS, then the command line, as gunicorn itself orders them."""
    assert explain(["-c", DEPLOY], {}).workers == 2
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--workers 3")
    assert explain(["-c", DEPLOY], {}).workers == 3
    assert explain(["-c", DEPLOY, "--workers", "5"], {}).workers == 5
    monkeypatch.setenv("WEB_CONCURRENCY", "7")  # read by the deploy file itself
    monkeypatch.delenv("GUNICORN_CMD_ARGS")
    assert explain(["-c", DEPLOY], {}).workers == 7


def test_the_text_names_every_number_and_its_reason() -> None:
    """The text report: the server, each setting with why, the whole server's totals, warnings."""
    out = io.StringIO()
    assert main(["explain", "-c", DEPLOY], out) == 0
    text = out.getvalue()
    assert "gunicorn: 2 workers, worker_class=gthread, threads=8" in text
    assert "pool_maxsize" in text
    assert "gthread worker with 8 threads" in text
    assert "connections to any one upstream: at most 16 (2 workers x pool_maxsize 8)" in text
    assert "every replica together (1 replica): at most 16 connections" in text
    assert "Warnings: none" in text


def test_json_output_and_upstream_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """--json prints the same facts as data, upstream overrides and warnings included."""
    monkeypatch.setenv("WSGI_POOL_UPSTREAMS", '{"https://search.internal": {"deadline": 40}}')
    out = io.StringIO()
    assert main(["explain", "--json", "--timeout", "30"], out) == 0
    data: dict[str, Any] = json.loads(out.getvalue())
    assert data["per_worker"]["pool_maxsize"]["value"] == 1
    assert data["whole_server"]["connections_per_upstream"] == 1
    assert data["fleet"] == {"replicas": 1, "connections_per_upstream": 1, "budget": None}
    assert data["upstreams"] == {"https://search.internal:443": {"deadline": 40}}
    assert any("search.internal" in warning for warning in data["warnings"])
    out = io.StringIO()
    main(["explain", "--timeout", "30"], out)
    assert "https://search.internal:443: deadline=40" in out.getvalue()


def test_a_fleet_budget_without_a_worker_count_is_warned() -> None:
    """Outside gunicorn (no workers reported or set), the budget counts one worker, with a warning."""
    from wsgi_pool import PoolConfig, size_pools  # noqa: PLC0415

    sizing = size_pools(
        PoolConfig(threads=8, worker_class="gthread", fleet_connections=12, replicas=3)
    )
    assert sizing.pool_maxsize == 4
    assert any("number of workers is unknown" in warning for warning in sizing.warnings)


def test_a_bad_setting_exits_with_its_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad WSGI_POOL_* value is reported, naming it, with exit status 2."""
    monkeypatch.setenv("WSGI_POOL_POOL_MAXSIZE", "many")
    assert main(["explain"]) == 2
    assert "WSGI_POOL_POOL_MAXSIZE" in capsys.readouterr().err


def test_python_dash_m_runs_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m wsgi_pool explain`` is the same command."""
    monkeypatch.setattr(sys, "argv", ["wsgi_pool", "explain", "-w", "3"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("wsgi_pool", run_name="__main__")
    assert exited.value.code == 0
    assert "gunicorn: 3 workers" in capsys.readouterr().out
