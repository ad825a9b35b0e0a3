"""What users already combine with requests works on wsgi_pool's calls, whichever is set up first.

Each library runs in a fresh interpreter (``tests/compat_child.py``), set up before and after
wsgi_pool's pools are built. Mocks and recorders are shown to intercept by the upstream's own
count: nothing reaches it while they answer. Tracers are shown to see every call, each with its
own trace header, on one reused connection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import vcr

import wsgi_pool
from tests.compat_child import MOCKED
from tests.support import ROOT
from wsgi_pool.testing import Upstream

ORDERS = ["wsgi-pool-first", "tool-first"]

QUIET_DDTRACE = {
    # Nothing leaves the process: no agent, no telemetry, no remote configuration.
    "DD_TRACE_AGENT_URL": "unix:///nonexistent/wsgi_pool-test.sock",
    "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
    "DD_REMOTE_CONFIGURATION_ENABLED": "false",
    "DD_TRACE_STARTUP_LOGS": "false",
}


def python(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m ARGS`` in a fresh interpreter; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done


def run_child(tool: str, order: str, url: str, directory: Path) -> dict[str, Any]:
    env = {**os.environ, **QUIET_DDTRACE, "PYTHONWARNINGS": "ignore"}
    done = python("tests.compat_child", tool, order, url, str(directory), cwd=ROOT, env=env)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("tool", ["responses", "requests-mock"])
def test_a_mock_intercepts_every_call(
    tool: str, order: str, upstream: Upstream, tmp_path: Path
) -> None:
    result = run_child(tool, order, f"{upstream.url}/x", tmp_path)
    assert result == {"bodies": [MOCKED] * 3, "seen": 3}
    assert upstream.stats().connections_opened == 0


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("tool", ["vcrpy", "betamax"])
def test_a_recorder_records_then_replays_without_the_network(
    tool: str, order: str, upstream: Upstream, tmp_path: Path
) -> None:
    recorded = run_child(tool, order, f"{upstream.url}/x", tmp_path)
    assert upstream.stats().requests_served == 3
    upstream.reset()
    replayed = run_child(tool, order, f"{upstream.url}/x", tmp_path)
    assert replayed["bodies"] == recorded["bodies"]
    assert [json.loads(body)["path"] for body in replayed["bodies"]] == [
        f"/x?n={n}" for n in range(3)
    ]
    assert upstream.stats().connections_opened == 0


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(
    "tool",
    [
        "opentelemetry-requests",
        "opentelemetry-urllib3",
        "sentry",
        "ddtrace-requests",
        "ddtrace-urllib3",
    ],
)
def test_a_tracer_sees_every_call_on_a_reused_connection(
    tool: str, order: str, upstream: Upstream, tmp_path: Path
) -> None:
    url = f"{upstream.url}/x"
    result = run_child(tool, order, url, tmp_path)
    if result["spans"] is not None:  # ddtrace's spans go to its agent: its headers show them
        assert sorted(result["spans"]) == [f"{url}?n={n}" for n in range(3)]
    headers = [
        {name.lower(): value for name, value in json.loads(body)["headers"].items()}
        for body in result["bodies"]
    ]
    sent = [found.get(result["header"]) for found in headers]
    assert None not in sent
    assert len(set(sent)) == 3, "each call has its own span"
    assert upstream.stats().connections_opened == 1


def test_pytest_recording_replays_a_cassette_without_the_network(
    upstream: Upstream, tmp_path: Path
) -> None:
    """pytest-recording's ``@pytest.mark.vcr``: ``--record-mode=once`` records, then
    ``--record-mode=none`` replays with no connection."""
    (tmp_path / "test_view.py").write_text(
        "import os\n"
        "import pytest\n"
        "import wsgi_pool\n\n"
        "@pytest.mark.vcr\n"
        "def test_view():\n"
        "    with wsgi_pool.client() as http:\n"
        "        answer = http.get(os.environ['UPSTREAM'] + '/recorded').json()\n"
        "    assert answer['path'] == '/recorded'\n"
    )
    env = {**os.environ, "UPSTREAM": upstream.url, "PYTHONPATH": str(ROOT)}
    for mode in ("once", "none"):
        python(
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:cov",
            f"--record-mode={mode}",
            "test_view.py",
            cwd=tmp_path,
            env=env,
        )
        if mode == "once":
            assert upstream.stats().requests_served == 1
            assert list((tmp_path / "cassettes").rglob("*.yaml"))
            upstream.reset()
    assert upstream.stats().connections_opened == 0


def test_vcrpy_in_process_with_connections_already_pooled(
    upstream: Upstream, tmp_path: Path
) -> None:
    """A pooled connection from before the cassette: vcrpy takes it out of the pool and puts it
    back when the cassette ends; the pool's bound stays whole and later calls work."""
    with wsgi_pool.client() as http:
        assert http.get(f"{upstream.url}/before").status_code == 200
        cassette = str(tmp_path / "cassette.yaml")
        with vcr.use_cassette(cassette):
            recorded = http.get(f"{upstream.url}/recorded").json()
        upstream.reset()
        with vcr.use_cassette(cassette, record_mode="none"):
            assert http.get(f"{upstream.url}/recorded").json() == recorded
        assert upstream.stats().connections_opened == 0
        # Afterwards: as many calls at once as the pool allows, then more, all answered.
        assert [http.get(f"{upstream.url}/after/{n}").status_code for n in range(12)] == [200] * 12
        counts = http.pools.stats()[upstream.url]
        assert counts.in_use == 0
