"""deploy/: every file parses, and their numbers agree with each other and with the config module."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import gunicorn.config  # noqa: F401  (before any test sets WEB_CONCURRENCY: gunicorn reads it once, at import, as the default of workers)
import pytest
import yaml

from tests.support import ROOT
from wsgi_pool import PoolConfig, size_pools
from wsgi_pool._env import ENV_PREFIX
from wsgi_pool._explain import explain
from wsgi_pool._sizing import fleet_share

DEPLOY = ROOT / "deploy"
CONF = str(DEPLOY / "gunicorn.conf.py")


def _kubernetes() -> dict[str, Any]:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))
    return {document["kind"]: document for document in documents}


def _container(manifests: dict[str, Any]) -> dict[str, Any]:
    (container,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _container_env(manifests: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in _container(manifests)["env"]}


def _unit() -> dict[str, list[str]]:
    """The systemd unit's [Service] keys, each with its values in order."""
    found: dict[str, list[str]] = {}
    section = None
    for line in (DEPLOY / "wsgi_pool.service").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        if section == "Service":
            found.setdefault(key, []).append(value)
    return found


def _unit_env() -> dict[str, str]:
    return dict(value.split("=", 1) for value in _unit()["Environment"])


def _dockerfile_env() -> dict[str, str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("ENV ")]
    return dict(part.split("=", 1) for part in shlex.split(line[len("ENV ") :]))


@pytest.mark.parametrize(
    "env",
    [_container_env(_kubernetes()), _unit_env(), _dockerfile_env()],
    ids=["kubernetes", "systemd", "docker"],
)
def test_every_setting_is_one_the_config_knows(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every WSGI_POOL_* variable is a field and parses; gunicorn reads the file's variables; no warning."""
    pooled = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    assert pooled, "the settings of wsgi_pool are given"
    PoolConfig.from_env(pooled)  # an unknown or bad variable raises
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    found = explain(["-c", CONF], pooled)
    assert found.workers == int(env["WEB_CONCURRENCY"])
    assert found.threads == int(env["GUNICORN_THREADS"])
    assert found.sizing.warnings == ()
    assert env["PROMETHEUS_MULTIPROC_DIR"]
    assert env["WSGI_POOL_METRICS_PATH"] == "/metrics"


def test_the_fleet_budget_holds_at_full_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    """WSGI_POOL_REPLICAS is the autoscaler's maximum, and at that scale the budget is kept and used."""
    manifests = _kubernetes()
    env = _container_env(manifests)
    hpa = manifests["HorizontalPodAutoscaler"]["spec"]
    assert int(env["WSGI_POOL_REPLICAS"]) == hpa["maxReplicas"]
    assert manifests["Deployment"]["spec"]["replicas"] == hpa["minReplicas"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    found = explain(["-c", CONF], {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)})
    budget = int(env["WSGI_POOL_FLEET_CONNECTIONS"])
    assert fleet_share(found.config) == found.sizing.pool_maxsize == int(env["GUNICORN_THREADS"])
    assert hpa["maxReplicas"] * found.per_upstream == budget  # the whole budget, no more
    assert size_pools(found.config).pool_block is True


def test_shutdown_and_disruption_numbers_agree() -> None:
    """preStop plus gunicorn's graceful timeout fit in the grace period; the PDB leaves room to drain."""
    manifests = _kubernetes()
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    container = _container(manifests)
    env = _container_env(manifests)
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pre_stop + int(env["GUNICORN_GRACEFUL_TIMEOUT"]) < pod["terminationGracePeriodSeconds"]
    assert (
        manifests["PodDisruptionBudget"]["spec"]["minAvailable"]
        < manifests["HorizontalPodAutoscaler"]["spec"]["minReplicas"]
    )
    selector = manifests["Deployment"]["spec"]["selector"]["matchLabels"]
    assert manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    assert (
        manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"]
        == manifests["Deployment"]["metadata"]["name"]
    )
    unit = _unit()
    assert int(unit["TimeoutStopSec"][0]) > int(_unit_env()["GUNICORN_GRACEFUL_TIMEOUT"])


def test_probes_ports_and_metrics_point_at_what_is_served() -> None:
    """Probes and the scrape annotations use the container's port and paths the app answers."""
    manifests = _kubernetes()
    container = _container(manifests)
    env = _container_env(manifests)
    (port,) = container["ports"]
    assert env["GUNICORN_BIND"].rsplit(":", 1)[1] == str(port["containerPort"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]
        assert container[probe]["httpGet"]["path"] == "/healthz"
    annotations = manifests["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == env["WSGI_POOL_METRICS_PATH"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert any(env["PROMETHEUS_MULTIPROC_DIR"].startswith(path) for path in mounts)


def test_nothing_runs_as_root() -> None:
    """The image switches to an unprivileged user, the pod refuses root, the unit names a user."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:[\d.]+-slim$", dockerfile, flags=re.MULTILINE)
    (user,) = re.findall(r"^USER (\S+)$", dockerfile, flags=re.MULTILINE)
    assert user.split(":")[0] not in {"0", "root"}
    pod = _kubernetes()["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == user.split(":")[0]
    assert _unit()["User"] != ["root"]


def test_every_file_starts_the_shipped_gunicorn_configuration() -> None:
    """systemd, the image and the demo all run gunicorn with deploy/gunicorn.conf.py and its hooks."""
    (start,) = _unit()["ExecStart"]
    assert "-c /srv/myapp/deploy/gunicorn.conf.py" in start
    assert (
        'CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py",' in (DEPLOY / "Dockerfile").read_text()
    )
    unit_dir = _unit_env()["PROMETHEUS_MULTIPROC_DIR"]
    assert unit_dir == "/run/" + _unit()["RuntimeDirectory"][0]  # emptied at each start
    assert Path(CONF).read_text().count("child_exit") >= 1


def test_the_configuration_empties_the_metrics_directory_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """on_starting (master) removes metric files an earlier run left, and makes the directory."""
    import runpy  # noqa: PLC0415

    from gunicorn.config import Config  # noqa: PLC0415

    directory = tmp_path / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    namespace = runpy.run_path(CONF)

    class Server:
        cfg = Config()

    namespace["on_starting"](Server())
    assert directory.is_dir()
    (directory / "counter_1.db").write_bytes(b"")
    (directory / "notes.txt").write_text("kept")
    namespace["on_starting"](Server())
    assert [p.name for p in directory.iterdir()] == ["notes.txt"]
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    namespace["on_starting"](Server())  # nothing to empty
