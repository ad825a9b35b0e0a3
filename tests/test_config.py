"""The config: validated on creation, read from the environment and from gunicorn, frozen."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
from gunicorn.config import Config

from wsgi_pool import (
    ConfigError,
    PoolConfig,
    UpstreamSettings,
    WsgiPoolError,
    size_pools,
)
from wsgi_pool._servers import gunicorn_report, normalize_worker_class


def gunicorn_cfg(**settings: object) -> Config:
    cfg = Config()
    for name, value in settings.items():
        cfg.set(name, value)
    return cfg


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param(
            {"pool_maxsize": 0},
            "pool_maxsize: expected a whole number >= 1, got 0",
            id="maxsize-zero",
        ),
        pytest.param(
            {"threads": -2}, "threads: expected a whole number >= 1, got -2", id="threads-negative"
        ),
        pytest.param(
            {"pool_connections": True},
            "pool_connections: expected a whole number >= 1, got True",
            id="bool-count",
        ),
        pytest.param(
            {"worker_connections": 2.5},
            "worker_connections: expected a whole number >= 1, got 2.5",
            id="float-count",
        ),
        pytest.param(
            {"pool_timeout": 0},
            "pool_timeout: expected a finite number of seconds > 0, got 0",
            id="zero-wait",
        ),
        pytest.param(
            {"read_timeout": float("inf")},
            "read_timeout: expected a finite number of seconds > 0, got inf",
            id="infinite-read",
        ),
        pytest.param(
            {"connect_timeout": "3"},
            "connect_timeout: expected a finite number of seconds > 0, got '3'",
            id="text-seconds",
        ),
        pytest.param(
            {"pool_block": "yes"}, "pool_block: expected True or False, got 'yes'", id="text-bool"
        ),
        pytest.param(
            {"worker_class": "uvicorn.workers.UvicornWorker"},
            "worker_class: 'uvicorn.workers.UvicornWorker' is not a known",
            id="unknown-class",
        ),
        pytest.param(
            {"worker_class": 3}, "worker_class: 3 is not a known worker class", id="class-not-text"
        ),
        pytest.param({"proxies": ["http://p:1"]}, "proxies: expected a mapping", id="proxies-list"),
        pytest.param(
            {"proxies": {"http": "proxy-without-scheme"}},
            "proxies['http']: 'proxy-without-scheme' is not a proxy URL",
            id="proxy-url",
        ),
        pytest.param(
            {"proxies": {"http": 3}}, "proxies: expected text keys and URLs", id="proxy-not-text"
        ),
        pytest.param(
            {"redirect_headers": ("Accept", "Authorization", "cookie")},
            "redirect_headers: authorization, cookie never go to another origin",
            id="credentials-across-origins",
        ),
        pytest.param(
            {"redirect_headers": "Accept"},
            "redirect_headers: expected header names, got 'Accept'",
            id="redirect-headers-text",
        ),
        pytest.param(
            {"request_id_header": "X Request"},
            "request_id_header: 'X Request' is not a header name",
            id="request-id-header",
        ),
        pytest.param(
            {"max_redirects": 0}, "max_redirects: expected a whole number >= 1, got 0", id="hops"
        ),
        pytest.param(
            {"egress_deny": ("169.254.169.254", "metadata")},
            "egress_deny: 'metadata' is not an address or network",
            id="egress-network",
        ),
        pytest.param(
            {"egress_allow": "10.0.0.0/8"},
            "egress_allow: expected networks like '10.0.0.0/8', got '10.0.0.0/8'",
            id="egress-text",
        ),
        pytest.param(
            {"ca_bundle": "/nonexistent/ca.pem"},
            "ca_bundle: expected the path of a CA file or directory, got '/nonexistent/ca.pem'",
            id="ca-missing",
        ),
        pytest.param(
            {"upstreams": {"https://a": {"ca_bundle": 3}}},
            "upstreams['https://a']: ca_bundle: expected the path of a CA file",
            id="upstream-ca",
        ),
        pytest.param(
            {"upstreams": {"https://a": {"propagate": "yes"}}},
            "upstreams['https://a']: propagate: expected True or False, got 'yes'",
            id="upstream-propagate",
        ),
        pytest.param(
            {"allow_unverified": 1},
            "allow_unverified: expected True or False, got 1",
            id="unverified",
        ),
    ],
)
def test_bad_values_raise_config_error_naming_setting_and_value(
    settings: dict[str, object], message: str
) -> None:
    """A bad value is a ConfigError (a ValueError and a WsgiPoolError) that names the setting and the value."""
    with pytest.raises(ConfigError) as caught:
        PoolConfig(**settings)  # type: ignore[arg-type]
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, WsgiPoolError)


def test_config_is_frozen_and_hashable() -> None:
    """Configs are immutable values: changed with dataclasses.replace, usable as keys."""
    config = PoolConfig(read_timeout=3.0, proxies={"http": "http://proxy:3128"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.read_timeout = 4.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.proxies["https"] = "http://other:1"  # type: ignore[index]
    assert dataclasses.replace(config, read_timeout=4.0).read_timeout == 4.0
    assert {config: 1}[PoolConfig(read_timeout=3.0, proxies={"http": "http://proxy:3128"})] == 1


def test_worker_class_aliases_are_normalized() -> None:
    """gunicorn's -k names, entry points and class paths all map to one concurrency model."""
    assert (
        PoolConfig(worker_class="gunicorn.workers.gthread.ThreadWorker").worker_class == "gthread"
    )
    assert PoolConfig(worker_class="egg:gunicorn#gevent").worker_class == "gevent"
    assert PoolConfig(worker_class="GEVENT_WSGI").worker_class == "gevent"
    assert normalize_worker_class("no.such.Worker") is None


def test_from_env_reads_every_field_by_its_name() -> None:
    """Every field F is read from WSGI_POOL_<F>; values are parsed by the field's type."""
    config = PoolConfig.from_env(
        {
            "WSGI_POOL_WORKER_CLASS": "gthread",
            "WSGI_POOL_THREADS": "12",
            "WSGI_POOL_WORKER_CONNECTIONS": "50",
            "WSGI_POOL_POOL_MAXSIZE": " 6 ",
            "WSGI_POOL_POOL_CONNECTIONS": "20",
            "WSGI_POOL_POOL_BLOCK": "off",
            "WSGI_POOL_POOL_TIMEOUT": "1.5",
            "WSGI_POOL_CONNECT_TIMEOUT": "2",
            "WSGI_POOL_READ_TIMEOUT": "7.5",
            "WSGI_POOL_TRUST_ENV": "yes",
            "WSGI_POOL_PROXIES": "http=http://proxy:3128, https=http://proxy:3129,",
            "WSGI_POOL_WORKER_TIMEOUT": "0",
            "WSGI_POOL_DEADLINE": "9",
            "WSGI_POOL_IDLE_TIMEOUT": "1.5",
            "WSGI_POOL_RETRIES": "0",
            "WSGI_POOL_RETRY_STATUSES": "502, 503,",
            "WSGI_POOL_BACKOFF_FACTOR": "0",
            "WSGI_POOL_BACKOFF_MAX": "0.5",
            "WSGI_POOL_RETRY_BUDGET": "0.1",
            "WSGI_POOL_RETRY_BUDGET_MIN_PER_SECOND": "1",
            "WSGI_POOL_MAX_RESPONSE_BYTES": "None",
            "WSGI_POOL_HTTP_CACHE_BYTES": "8388608",
            "WSGI_POOL_HTTP_CACHE_ENTRY_BYTES": "65536",
            "WSGI_POOL_DEADLINE_HEADERS": "X-Budget-Ms, ",
            "WSGI_POOL_PROPAGATE_DEADLINE": "1",
            "WSGI_POOL_UPSTREAMS": '{"HTTPS://Search.Internal": {"deadline": 2.5, "propagate": true}}',
            "WSGI_POOL_PROPAGATE": "off",
            "WSGI_POOL_REQUEST_ID_HEADER": "X-Correlation-ID",
            "WSGI_POOL_MAX_REDIRECTS": "2",
            "WSGI_POOL_REDIRECT_HEADERS": "Accept, X-Tenant",
            "WSGI_POOL_CA_BUNDLE": "none",
            "WSGI_POOL_ALLOW_UNVERIFIED": "true",
            "WSGI_POOL_EGRESS_ALLOW": "10.0.0.0/8, fd00::/8",
            "WSGI_POOL_EGRESS_DENY": "10.1.2.3",
            "WSGI_POOL_EGRESS_DENY_PRIVATE": "1",
            "WSGI_POOL_PROMETHEUS": "yes",
            "WSGI_POOL_WORKERS": "4",
            "WSGI_POOL_REPLICAS": "3",
            "WSGI_POOL_FLEET_CONNECTIONS": "48",
            "WSGI_POOL_METRICS_PATH": "/_metrics",
            "WSGI_POOL_MAX_CONNECTION_AGE": "none",
            "WSGI_POOL_MAX_REQUESTS_PER_CONNECTION": "100",
            "WSGI_POOL_EJECT_AFTER_FAILURES": "None",
            "WSGI_POOL_EJECT_AFTER_5XX": "4",
            "WSGI_POOL_EJECTION_TIME": "2",
            "WSGI_POOL_MAX_EJECTION_TIME": "30",
            "WSGI_POOL_MAX_PENDING": "None",
            "WSGI_POOL_MESH": "no",
            "WSGI_POOL_FAIL_FAST_WHEN_EJECTED": "yes",
            "WSGI_POOL_OPENTELEMETRY": "1",
            "PATH": "/usr/bin",
        }
    )
    assert config == PoolConfig(
        worker_class="gthread",
        threads=12,
        worker_connections=50,
        pool_maxsize=6,
        pool_connections=20,
        pool_block=False,
        pool_timeout=1.5,
        connect_timeout=2.0,
        read_timeout=7.5,
        trust_env=True,
        proxies={"http": "http://proxy:3128", "https": "http://proxy:3129"},
        worker_timeout=0,
        deadline=9.0,
        idle_timeout=1.5,
        retries=0,
        retry_statuses=frozenset({502, 503}),
        backoff_factor=0.0,
        backoff_max=0.5,
        retry_budget=0.1,
        retry_budget_min_per_second=1.0,
        max_response_bytes=None,
        http_cache_bytes=8388608,
        http_cache_entry_bytes=65536,
        deadline_headers=("X-Budget-Ms",),
        propagate_deadline=True,
        upstreams={"https://search.internal:443": UpstreamSettings(deadline=2.5, propagate=True)},
        propagate=False,
        request_id_header="X-Correlation-ID",
        max_redirects=2,
        redirect_headers=("accept", "x-tenant"),
        ca_bundle=None,
        allow_unverified=True,
        egress_allow=("10.0.0.0/8", "fd00::/8"),
        egress_deny=("10.1.2.3/32",),
        egress_deny_private=True,
        prometheus=True,
        metrics_path="/_metrics",
        workers=4,
        replicas=3,
        fleet_connections=48,
        max_connection_age=None,
        max_requests_per_connection=100,
        eject_after_failures=None,
        eject_after_5xx=4,
        ejection_time=2.0,
        max_ejection_time=30.0,
        max_pending=None,
        mesh=False,
        fail_fast_when_ejected=True,
        opentelemetry=True,
    )
    assert {f.name for f in dataclasses.fields(PoolConfig)} == {
        "worker_class", "threads", "worker_connections", "pool_maxsize", "pool_connections", "pool_block",
        "pool_timeout", "connect_timeout", "read_timeout", "worker_timeout", "deadline", "idle_timeout",
        "retries", "retry_statuses", "backoff_factor", "backoff_max", "retry_budget",
        "retry_budget_min_per_second", "max_response_bytes", "http_cache_bytes",
        "http_cache_entry_bytes", "deadline_headers", "propagate_deadline",
        "upstreams", "trust_env", "proxies", "propagate", "request_id_header", "max_redirects",
        "redirect_headers", "ca_bundle", "allow_unverified", "egress_allow", "egress_deny",
        "prometheus", "metrics_path", "workers", "replicas", "fleet_connections",
        "egress_deny_private", "max_connection_age", "max_requests_per_connection",
        "eject_after_failures", "eject_after_5xx", "ejection_time", "max_ejection_time",
        "max_pending", "mesh", "fail_fast_when_ejected", "opentelemetry",
    }  # fmt: skip


def test_kubernetes_service_variables_are_not_settings() -> None:
    """A Service named wsgi-pool gives every pod these; they are skipped, not refused."""
    environ = {
        "WSGI_POOL_SERVICE_HOST": "10.96.0.12",
        "WSGI_POOL_SERVICE_PORT": "8000",
        "WSGI_POOL_SERVICE_PORT_HTTP": "8000",
        "WSGI_POOL_PORT": "tcp://10.96.0.12:8000",
        "WSGI_POOL_PORT_8000_TCP": "tcp://10.96.0.12:8000",
        "WSGI_POOL_PORT_8000_TCP_PROTO": "tcp",
        "WSGI_POOL_PORT_8000_TCP_PORT": "8000",
        "WSGI_POOL_PORT_8000_TCP_ADDR": "10.96.0.12",
        "WSGI_POOL_READ_TIMEOUT": "3",
    }
    assert PoolConfig.from_env(environ) == PoolConfig(read_timeout=3.0)


def test_from_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an argument, from_env reads os.environ."""
    monkeypatch.setenv("WSGI_POOL_READ_TIMEOUT", "9")
    assert PoolConfig.from_env().read_timeout == 9.0
    assert PoolConfig.from_env({}) == PoolConfig()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param(
            {"WSGI_POOL_COLOUR": "blue"},
            "WSGI_POOL_COLOUR='blue': unknown setting (known: WSGI_POOL_WORKER_CLASS",
            id="unknown",
        ),
        pytest.param(
            {"WSGI_POOL_POOL_MAXSIZ": "4"},
            "WSGI_POOL_POOL_MAXSIZ='4': unknown setting; did you mean WSGI_POOL_POOL_MAXSIZE?",
            id="typo",
        ),
        pytest.param(
            {"WSGI_POOL_READ_TIMOUT": "4"},
            "WSGI_POOL_READ_TIMOUT='4': unknown setting; did you mean WSGI_POOL_READ_TIMEOUT?",
            id="typo in a word",
        ),
        pytest.param(
            {"WSGI_POOL_POOL_MAXSIZE": "four"},
            "WSGI_POOL_POOL_MAXSIZE='four': invalid literal",
            id="not-a-number",
        ),
        pytest.param(
            {"WSGI_POOL_POOL_BLOCK": "maybe"},
            "WSGI_POOL_POOL_BLOCK='maybe': expected one of",
            id="not-a-bool",
        ),
        pytest.param(
            {"WSGI_POOL_PROXIES": "http:proxy"},
            "WSGI_POOL_PROXIES='http:proxy': 'http:proxy' is not key=url",
            id="bad-proxies",
        ),
        pytest.param(
            {"WSGI_POOL_POOL_MAXSIZE": "0"},
            "pool_maxsize: expected a whole number >= 1, got 0 (from WSGI_POOL_POOL_MAXSIZE='0')",
            id="out-of-range",
        ),
        pytest.param(
            {"WSGI_POOL_UPSTREAMS": '{"http://a": {"read_timeout": -1}}'},
            "upstreams['http://a']: read_timeout: expected a finite number of seconds > 0, got -1"
            " (from WSGI_POOL_UPSTREAMS=",
            id="out-of-range-in-upstreams",
        ),
    ],
)
def test_from_env_errors_name_the_variable_and_value(environ: dict[str, str], message: str) -> None:
    """A typo or a bad value in the environment is a ConfigError naming the variable and the value."""
    with pytest.raises(ConfigError) as caught:
        PoolConfig.from_env(environ)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param({}, ("sync", 1, 1000), id="gunicorn-defaults"),
        pytest.param(
            {"worker_class": "gthread", "threads": 16}, ("gthread", 16, 1000), id="gthread"
        ),
        pytest.param(
            {"worker_class": "sync", "threads": 4},
            ("gthread", 4, 1000),
            id="sync-with-threads-is-gthread",
        ),
        pytest.param(
            {"worker_class": "gevent", "worker_connections": 300}, ("gevent", 1, 300), id="gevent"
        ),
        pytest.param(
            {"worker_class": "tests.workers.CustomThreadWorker", "threads": 3},
            ("gthread", 3, 1000),
            id="subclass",
        ),
        pytest.param(
            {"worker_class": "tests.workers.ForeignWorker", "threads": 3},
            (None, None, None),
            id="foreign",
        ),
    ],
)
def test_from_gunicorn_reads_the_servers_concurrency(
    settings: dict[str, object], expected: tuple[object, ...]
) -> None:
    """from_gunicorn takes worker class, threads and worker_connections from a real gunicorn Config."""
    config = PoolConfig.from_gunicorn(gunicorn_cfg(**settings), environ={})
    assert (config.worker_class, config.threads, config.worker_connections) == expected


def test_from_gunicorn_lets_the_environment_win() -> None:
    """A WSGI_POOL_* variable wins over what gunicorn reports; other fields come from the environment too."""
    cfg = gunicorn_cfg(worker_class="gthread", threads=16)
    config = PoolConfig.from_gunicorn(
        cfg, environ={"WSGI_POOL_THREADS": "4", "WSGI_POOL_POOL_TIMEOUT": "2"}
    )
    assert (config.worker_class, config.threads, config.pool_timeout) == ("gthread", 4, 2.0)
    assert size_pools(config).pool_maxsize == 4


def test_from_gunicorn_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an environ argument, from_gunicorn reads os.environ, once."""
    monkeypatch.setenv("WSGI_POOL_CONNECT_TIMEOUT", "1.25")
    assert PoolConfig.from_gunicorn(gunicorn_cfg()).connect_timeout == 1.25
    assert os.environ["WSGI_POOL_CONNECT_TIMEOUT"] == "1.25"


def test_server_defaults_fill_only_unset_fields() -> None:
    """What the server reports fills the concurrency fields the config left unset, nothing else."""
    server = gunicorn_report(gunicorn_cfg(worker_class="gthread", threads=8))
    assert PoolConfig(read_timeout=2.0).completed_by(server) == PoolConfig(
        read_timeout=2.0,
        worker_class="gthread",
        threads=8,
        worker_connections=1000,
        worker_timeout=30.0,
        workers=1,
    )
    mine = PoolConfig(
        worker_class="sync", threads=2, worker_connections=5, worker_timeout=9, workers=3
    )
    assert mine.completed_by(server) is mine
    assert mine.completed_by(None) is mine


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param({"retries": -1}, "retries: expected a whole number >= 0", id="retries"),
        pytest.param(
            {"retry_statuses": "503"}, "retry_statuses: expected status codes", id="statuses text"
        ),
        pytest.param(
            {"retry_statuses": {99}}, "retry_statuses: 99 is not an HTTP status", id="status"
        ),
        pytest.param(
            {"deadline_headers": "X-A"},
            "deadline_headers: expected header names",
            id="headers text",
        ),
        pytest.param(
            {"deadline_headers": ("X A",)}, "deadline_headers: 'X A' is not a header", id="header"
        ),
        pytest.param(
            {"retry_budget": 1.5}, "retry_budget: expected a fraction from 0 to 1", id="budget"
        ),
        pytest.param(
            {"backoff_factor": -1},
            "backoff_factor: expected a finite number of seconds >= 0",
            id="backoff",
        ),
        pytest.param(
            {"deadline": 0}, "deadline: expected a finite number of seconds > 0", id="deadline"
        ),
        pytest.param(
            {"max_response_bytes": 0},
            "max_response_bytes: expected a whole number >= 1",
            id="limit",
        ),
        pytest.param(
            {"upstreams": []}, "upstreams: expected a mapping of origin", id="upstreams list"
        ),
        pytest.param({"upstreams": {1: {}}}, "upstreams: 1 is not an origin", id="origin type"),
        pytest.param(
            {"upstreams": {"ftp://x": {}}}, "upstreams: 'ftp://x' is not an origin", id="scheme"
        ),
        pytest.param({"upstreams": {"https://x:99999": {}}}, "is not an origin", id="port"),
        pytest.param({"upstreams": {"https://x/api": {}}}, "remove the path", id="path"),
        pytest.param(
            {"upstreams": {"https://x": 5}}, "expected UpstreamSettings or a mapping", id="value"
        ),
        pytest.param(
            {"upstreams": {"https://x": {"speed": 1}}}, "upstreams['https://x']: ", id="field"
        ),
        pytest.param(
            {"upstreams": {"https://x": {"deadline": -1}}},
            "upstreams['https://x']: deadline",
            id="bad",
        ),
    ],
)
def test_bad_resilience_settings_name_setting_and_value(
    settings: dict[str, Any], message: str
) -> None:
    """Each new setting is validated at construction, with the setting named."""
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        PoolConfig(**settings)


def test_upstreams_from_the_environment_must_be_a_json_object() -> None:
    """WSGI_POOL_UPSTREAMS is JSON; a list is refused with the variable named."""
    with pytest.raises(ConfigError, match="WSGI_POOL_UPSTREAMS="):
        PoolConfig.from_env({"WSGI_POOL_UPSTREAMS": "[1]"})


def test_a_name_far_from_every_setting_gets_no_suggestion() -> None:
    """Only the part after WSGI_POOL_ is compared: the prefix makes no name look close."""
    for name in ("WSGI_POOL_DEBUG", "WSGI_POOL_ENABLED", "WSGI_POOL_URL", "WSGI_POOL_OTEL"):
        with pytest.raises(ConfigError) as caught:
            PoolConfig.from_env({name: "1"})
        assert "did you mean" not in str(caught.value)
        assert "(known: WSGI_POOL_WORKER_CLASS" in str(caught.value)
