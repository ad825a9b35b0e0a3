"""The monitoring shipped in ``deploy/monitoring``, against real parts: promtool checks and
unit-tests the alert rules; a real Prometheus (Debian's) scrapes real gunicorn workers under
load, and every query of the Grafana dashboard, and of the alerts, is evaluated against it."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import CONF, ROOT, get, run_together
from wsgi_pool.testing import GunicornServer, Upstream, free_port

MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = json.loads((MONITORING / "grafana-dashboard.json").read_text())
ALERTS = yaml.safe_load((MONITORING / "alerts.yaml").read_text())


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_alert_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", "alerts.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    tested = promtool("test", "rules", "alerts_test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_service_monitor_scrapes_what_the_app_serves() -> None:
    """Its selector finds the Service, its port is the Service's, its path the metrics path."""
    monitor = yaml.safe_load((MONITORING / "servicemonitor.yaml").read_text())
    manifests = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))
    (service,) = [m for m in manifests if m["kind"] == "Service"]
    (deployment,) = [m for m in manifests if m["kind"] == "Deployment"]
    labels = monitor["spec"]["selector"]["matchLabels"]
    assert labels.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    env = {
        item["name"]: item.get("value")
        for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert endpoint["path"] == env["WSGI_POOL_METRICS_PATH"]


def dashboard_queries() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in DASHBOARD["panels"]
        for target in panel["targets"]
    ]


class Prometheus:
    """Debian's Prometheus scraping one target every second, in a directory of its own."""

    def __init__(self, directory: Path, target: str) -> None:
        self.port = free_port()
        config = directory / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: app\n"
            "    metrics_path: /metrics\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.load(answer)

    def ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/-/ready", timeout=2
                ) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("Prometheus did not become ready")

    def query(self, expr: str) -> list[Any]:
        found = self.api("/api/v1/query", query=expr)
        assert found["status"] == "success", (expr, found)
        return list(found["data"]["result"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def scraped(upstream: Upstream, tmp_path: Path) -> Iterator[Prometheus]:
    """gunicorn, two workers with one connection each per upstream, under a load that makes
    calls wait, fail, retry and rotate connections; Prometheus scraping it every second."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    env = {
        "UPSTREAM_URL": upstream.url,
        "WSGI_POOL_METRICS_PATH": "/metrics",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        "WSGI_POOL_POOL_MAXSIZE": "1",
        "WSGI_POOL_MAX_REQUESTS_PER_CONNECTION": "3",
        "WSGI_POOL_BACKOFF_FACTOR": "0",
    }
    flags = ["-c", CONF, "-k", "gthread", "-w", "2", "--threads", "4"]
    refused = urllib.parse.quote(f"http://127.0.0.1:{free_port()}/", safe="")
    busy = urllib.parse.quote(f"{upstream.url}/busy?status=503", safe="")
    with GunicornServer("tests.apps:app", flags, env=env, cwd=str(ROOT)) as server:
        prometheus = Prometheus(tmp_path, f"127.0.0.1:{server.port}")
        try:
            prometheus.ready()
            ends = time.monotonic() + 6
            while time.monotonic() < ends:
                answers = run_together(
                    *[lambda: get(server, "/")[0]] * 3,
                    *[lambda: get(server, "/fleet")[0]] * 3,
                    lambda: get(server, f"/call?url={refused}")[0],
                    lambda: get(server, f"/call?url={busy}")[0],
                    timeout=60,
                )
                assert sorted(answers) == [200] * 6 + [502, 503]
            yield prometheus
        finally:
            prometheus.stop()


def test_every_dashboard_and_alert_query_has_data_from_real_workers(
    scraped: Prometheus,
) -> None:
    """Each panel's query returns series (with $__rate_interval as 30s); each alert's
    expression evaluates (an alert that should not fire returns nothing, and that is right)."""
    deadline = time.monotonic() + 30
    empty = dashboard_queries()
    while empty and time.monotonic() < deadline:
        empty = [
            (title, expr)
            for title, expr in empty
            if not scraped.query(expr.replace("$__rate_interval", "30s"))
        ]
        if empty:
            time.sleep(1)
    assert empty == []
    errors = scraped.query('sum by (kind) (wsgi_pool_errors_total{kind="UpstreamRefused"})')
    assert float(errors[0]["value"][1]) >= 1
    waits = scraped.query("sum(wsgi_pool_pool_waits_total)")
    assert float(waits[0]["value"][1]) >= 1
    for group in ALERTS["groups"]:
        for rule in group["rules"]:
            scraped.query(rule["expr"])  # valid against real series
    (target,) = scraped.api("/api/v1/targets")["data"]["activeTargets"]
    assert target["health"] == "up"
