"""Configuration: one frozen value, and the one pure function that sizes the pools.

This module imports nothing from requests, urllib3 or gunicorn: it runs in the gunicorn
master (``on_starting``) to reject a bad setting before any worker is forked.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from ._errors import ConfigError

ENV_PREFIX: Final = "WSGI_POOL_"
"""Every setting ``name`` is read from the environment variable ``WSGI_POOL_<NAME>``."""

GEVENT_POOL_CAP: Final = 100
"""Largest per-upstream pool derived from gevent's ``worker_connections``."""

DEFAULT_HOST_POOLS: Final = 10
"""Per-host pools kept (LRU) when ``pool_connections`` is not set: requests' default."""

UNKNOWN_SERVER_MAXSIZE: Final = 10
"""Per-host pool size when the server's concurrency is unknown: requests' default."""

DEFAULT_POOL_TIMEOUT: Final = 5.0
"""Seconds a call waits for a free pooled connection when ``pool_timeout`` is not set."""

DEFAULT_DEADLINE: Final = 20.0
"""Seconds a whole call may take when ``deadline`` is not set and the worker timeout allows."""

DEADLINE_SHARE_OF_WORKER_TIMEOUT: Final = 0.75
"""A derived deadline never exceeds this share of gunicorn's worker ``timeout``."""

MIB: Final = 1024 * 1024

WORKER_CLASSES: Final = ("sync", "gthread", "gevent", "tornado")

# gunicorn's names for its worker classes (``-k`` values, entry points and class paths),
# mapped to the concurrency model that sizes the pools.
_WORKER_ALIASES: Final[Mapping[str, str]] = {
    "sync": "sync",
    "gunicorn.workers.sync.SyncWorker": "sync",
    "gthread": "gthread",
    "gunicorn.workers.gthread.ThreadWorker": "gthread",
    "gevent": "gevent",
    "gevent_wsgi": "gevent",
    "gevent_pywsgi": "gevent",
    "gunicorn.workers.ggevent.GeventWorker": "gevent",
    "gunicorn.workers.ggevent.GeventResponseWorker": "gevent",
    "gunicorn.workers.ggevent.GeventPyWSGIWorker": "gevent",
    "tornado": "tornado",
    "gunicorn.workers.gtornado.TornadoWorker": "tornado",
}

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _setting(default: Any, doc: str, parse: Callable[[str], Any]) -> Any:
    """A config field whose documentation and environment parser live on the field."""
    if isinstance(default, dict):
        return field(default_factory=dict, hash=False, metadata={"doc": doc, "parse": parse})
    return field(default=default, metadata={"doc": doc, "parse": parse})


def _parse_int(text: str) -> int:
    return int(text.strip())


def _parse_float(text: str) -> float:
    return float(text.strip())


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")


def _parse_str(text: str) -> str:
    return text.strip()


def _parse_optional_str(text: str) -> str | None:
    return None if text.strip().lower() in {"", "none"} else text.strip()


def _parse_optional_int(text: str) -> int | None:
    return None if text.strip().lower() == "none" else int(text.strip())


def _parse_statuses(text: str) -> frozenset[int]:
    return frozenset(int(part) for part in text.split(",") if part.strip())


def _parse_names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_upstreams(text: str) -> dict[str, Any]:
    """JSON: ``{"https://search.internal": {"deadline": 2.5, "retries": 0}}``."""
    found = json.loads(text)
    if not isinstance(found, dict):
        raise ValueError("expected a JSON object of origin to settings")
    return found


def _parse_proxies(text: str) -> dict[str, str]:
    """``"http=http://proxy:3128,https=http://proxy:3128"`` -> a requests proxies mapping."""
    proxies: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, url = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not key=url")
        proxies[key.strip()] = url.strip()
    return proxies


def normalize_worker_class(name: str) -> str | None:
    """gunicorn's name for a worker class -> ``sync``, ``gthread``, ``gevent``, ``tornado``, or None."""
    key = name.strip()
    key = key.removeprefix("egg:gunicorn#")
    return _WORKER_ALIASES.get(key) or _WORKER_ALIASES.get(key.lower())


DEADLINE_HEADER: Final = "X-Request-Deadline"
"""The header that carries a remaining budget in milliseconds, in and (``propagate_deadline``) out."""

REQUEST_ID_HEADER: Final = "X-Request-ID"
"""The default header of the request id."""

_TOKEN: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_DEFAULT_PORTS: Final[Mapping[str, int]] = MappingProxyType({"http": 80, "https": 443})


def normalize_origin(text: str) -> str:
    """``"HTTPS://Api.Internal"`` -> ``"https://api.internal:443"``: how upstreams are named and matched."""
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if scheme not in _DEFAULT_PORTS or not parts.hostname or port == -1:
        raise ValueError(f"{text!r} is not an origin like https://host[:port]")
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r} is not an origin like https://host[:port]: remove the path")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS[scheme]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamSettings:
    """Settings for one upstream (an origin) that win over the config's. ``None``: the config's."""

    deadline: float | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    retries: int | None = None
    max_response_bytes: int | None = None
    propagate: bool | None = None
    """Send this upstream the request id, trace context and (``propagate_deadline``) budget."""
    ca_bundle: str | None = None
    """CA certificates (a PEM file or a hashed directory) that verify this upstream, instead of
    the config's ``ca_bundle`` or certifi's."""

    def __post_init__(self) -> None:
        for name in ("deadline", "connect_timeout", "read_timeout"):
            check_seconds(name, getattr(self, name))
        _check_count("max_response_bytes", self.max_response_bytes)
        _check_whole("retries", self.retries)
        _check_bool("propagate", self.propagate)
        _check_ca_bundle("ca_bundle", self.ca_bundle)


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolConfig:
    """Everything that shapes a worker's pools and its clients. Immutable; validated on creation.

    Change one with ``dataclasses.replace(config, read_timeout=5.0)``. Build one from the
    environment with :meth:`from_env`, from a gunicorn configuration with :meth:`from_gunicorn`.
    A field left ``None`` is derived: the concurrency fields from what the gunicorn hooks
    report, the pool fields by :func:`size_pools`.
    """

    worker_class: str | None = _setting(
        None,
        "The server's concurrency model: sync, gthread, gevent or tornado (gunicorn's -k names "
        "and class paths are accepted). None: as the wsgi_pool.gunicorn hooks report it.",
        _parse_str,
    )
    threads: int | None = _setting(
        None, "Threads per worker. None: as the gunicorn hooks report it.", _parse_int
    )
    worker_connections: int | None = _setting(
        None,
        "Concurrent clients per gevent worker. None: as the gunicorn hooks report it.",
        _parse_int,
    )
    workers: int | None = _setting(
        None,
        "Worker processes per server (gunicorn's workers). None: as the gunicorn hooks report "
        "it. Only the fleet budget uses it.",
        _parse_int,
    )
    replicas: int | None = _setting(
        None,
        "Copies of this server that call the same upstreams (pods, machines), as the "
        "orchestrator sets it (WSGI_POOL_REPLICAS). Only the fleet budget uses it; None: 1.",
        _parse_int,
    )
    fleet_connections: int | None = _setting(
        None,
        "Connections all replicas together may hold to any one upstream. Each worker's "
        "pool_maxsize becomes at most fleet_connections // (replicas x workers), at least 1, "
        "and calls over it wait (pool_block). None: no fleet budget.",
        _parse_optional_int,
    )
    pool_maxsize: int | None = _setting(
        None,
        "Connections kept per upstream (scheme, host, port) in each worker. None: derived "
        "from the server's concurrency.",
        _parse_int,
    )
    pool_connections: int | None = _setting(
        None,
        f"Per-upstream pools kept per worker, least recently used dropped first. "
        f"None: {DEFAULT_HOST_POOLS}.",
        _parse_int,
    )
    pool_block: bool | None = _setting(
        None,
        "When every pooled connection to an upstream is busy, wait for one (True) or open "
        "an extra one that is discarded afterwards (False). None: True.",
        _parse_bool,
    )
    pool_timeout: float | None = _setting(
        None,
        f"Seconds a call waits for a free pooled connection before raising PoolTimeout. "
        f"None: {DEFAULT_POOL_TIMEOUT:g}.",
        _parse_float,
    )
    connect_timeout: float = _setting(
        5.0, "Seconds to establish a connection, when the caller gives no timeout.", _parse_float
    )
    read_timeout: float = _setting(
        15.0,
        "Seconds to wait for each read from the upstream, when the caller gives no timeout.",
        _parse_float,
    )
    worker_timeout: float | None = _setting(
        None,
        "gunicorn's worker timeout in seconds (0: none), which the derived deadline stays "
        "below. None: as the gunicorn hooks report it.",
        _parse_float,
    )
    deadline: float | None = _setting(
        None,
        f"Seconds a whole call may take: waiting for a pooled connection, connecting, "
        f"retries and their backoff, redirects and reading the body. None: "
        f"{DEFAULT_DEADLINE:g}, or 3/4 of the worker timeout when that is less.",
        _parse_float,
    )
    idle_timeout: float = _setting(
        4.0,
        "Seconds a pooled connection may sit idle before it is closed rather than reused: "
        "below the keep-alive timeout of common servers (5 s in Node.js, Apache, uvicorn).",
        _parse_float,
    )
    retries: int = _setting(
        2,
        "Retries after a connect failure (nothing was sent, any method) or a retry_statuses "
        "response (idempotent methods, or an Idempotency-Key header, only). 0: none.",
        _parse_int,
    )
    retry_statuses: frozenset[int] = _setting(
        frozenset({429, 503}),
        "Response statuses that are retried (environment: '429,503').",
        _parse_statuses,
    )
    backoff_factor: float = _setting(
        0.1,
        "Seconds before the first retry, doubling with each retry up to backoff_max, with "
        "jitter. A Retry-After header wins; one that ends past the deadline stops retrying.",
        _parse_float,
    )
    backoff_max: float = _setting(2.0, "Longest backoff between retries, seconds.", _parse_float)
    retry_budget: float = _setting(
        0.2,
        "Retries to one upstream may add at most this fraction to its requests of the last "
        "10 s (per worker), plus retry_budget_min_per_second: a failing upstream gets no "
        "retry storm.",
        _parse_float,
    )
    retry_budget_min_per_second: float = _setting(
        10.0,
        "Retries per second always allowed to each upstream, so one with little traffic can "
        "still be retried.",
        _parse_float,
    )
    max_response_bytes: int | None = _setting(
        64 * MIB,
        "Largest response body, counted after decompression (a gzip bomb stops early); "
        "larger raises ResponseTooLarge. Redirect bodies are never decoded. None: no limit.",
        _parse_optional_int,
    )
    http_cache_bytes: int | None = _setting(
        None,
        "Memory per worker for an HTTP cache of GET responses (CacheControl; install "
        "wsgi_pool[cache]): fresh ones are answered without a call, stale ones revalidated "
        "with their ETag or Last-Modified. A shared cache: requests with Authorization or "
        "Cookie, and private or cookie-setting responses, are never stored. None: no cache.",
        _parse_optional_int,
    )
    http_cache_entry_bytes: int = _setting(
        MIB, "Largest response body the HTTP cache stores.", _parse_int
    )
    deadline_headers: tuple[str, ...] = _setting(
        (DEADLINE_HEADER, "X-Envoy-Expected-Rq-Timeout-Ms"),
        "Incoming request headers carrying the caller's remaining budget in milliseconds "
        "(the first valid one counts); outbound calls never outlive it. A budget only ever "
        "shortens the deadline. Empty: ignore them.",
        _parse_names,
    )
    propagate: bool = _setting(
        False,
        "Send every upstream the incoming request's id and W3C trace context (validated; "
        "fresh ones when absent or invalid). Off: only upstreams whose settings say "
        "propagate=True get them; third parties see none.",
        _parse_bool,
    )
    propagate_deadline: bool = _setting(
        False,
        f"Also send the upstreams that get propagation the call's remaining budget in "
        f"milliseconds, as {DEADLINE_HEADER}.",
        _parse_bool,
    )
    request_id_header: str = _setting(
        REQUEST_ID_HEADER,
        "The header that carries the request id, in (validated) and out (to upstreams that "
        "get propagation).",
        _parse_str,
    )
    upstreams: Mapping[str, UpstreamSettings] = _setting(
        {},
        "Per-upstream settings that win over these: deadline, connect_timeout, read_timeout, "
        "retries, max_response_bytes, propagate, ca_bundle, by origin (environment: JSON, "
        '\'{"https://search.internal": {"deadline": 2.5, "propagate": true}}\').',
        _parse_upstreams,
    )
    max_redirects: int = _setting(
        5,
        "Redirects a call follows before raising TooManyRedirects (a client's own "
        "max_redirects can only lower it).",
        _parse_int,
    )
    redirect_headers: tuple[str, ...] = _setting(
        ("accept", "accept-encoding", "accept-language", "user-agent"),
        "The only headers a redirect to another origin carries on (environment: "
        "'Accept,User-Agent'). Credentials (Authorization, Cookie, Proxy-Authorization) "
        "never cross origins, and cannot be listed.",
        _parse_names,
    )
    ca_bundle: str | None = _setting(
        None,
        "CA certificates (a PEM file or a hashed directory) that verify every upstream "
        "without its own ca_bundle. None: certifi's. Never read from the environment.",
        _parse_optional_str,
    )
    allow_unverified: bool = _setting(
        False,
        "Let a call pass verify=False. Off: such a call raises InsecureRequestRefused. On: "
        "it still never shares a pooled connection with verified calls.",
        _parse_bool,
    )
    egress_allow: tuple[str, ...] = _setting(
        (),
        "Networks calls may connect to (CIDR, environment: '10.0.0.0/8,fd00::/8'); any "
        "other address is refused. Empty: no allowlist.",
        _parse_names,
    )
    egress_deny: tuple[str, ...] = _setting(
        (),
        "Networks calls may never connect to (CIDR); wins over egress_allow.",
        _parse_names,
    )
    egress_deny_private: bool = _setting(
        False,
        "Refuse every address that is not globally routable: loopback, private, link-local "
        "(cloud metadata at 169.254.169.254 included), shared, reserved, unique-local "
        "(fd00:ec2::254). An address listed in egress_allow is still allowed.",
        _parse_bool,
    )
    trust_env: bool = _setting(
        False,
        "Read HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY from the process environment, "
        "once, when a worker builds its pools. Never per call, never .netrc or CA bundle "
        "variables, never from an incoming request.",
        _parse_bool,
    )
    prometheus: bool = _setting(
        False,
        "Keep Prometheus metrics of the pools in prometheus_client (needs "
        "wsgi_pool[prometheus]; see wsgi_pool.prometheus for gunicorn's many processes).",
        _parse_bool,
    )
    metrics_path: str | None = _setting(
        None,
        "A path the middleware answers with the Prometheus exposition (turns prometheus on); "
        "None: no endpoint.",
        _parse_optional_str,
    )
    proxies: Mapping[str, str] = _setting(
        {},
        "Proxies by scheme or 'scheme://host', as in requests (environment: "
        "'http=http://proxy:3128,https=http://proxy:3128'). They win over trust_env.",
        _parse_proxies,
    )

    def __post_init__(self) -> None:
        if self.worker_class is not None:
            kind = (
                normalize_worker_class(self.worker_class)
                if isinstance(self.worker_class, str)
                else None
            )
            if kind is None:
                raise ConfigError(
                    f"worker_class: {self.worker_class!r} is not a known worker class; "
                    f"use one of {', '.join(WORKER_CLASSES)} (or set pool_maxsize)"
                )
            object.__setattr__(self, "worker_class", kind)
        for name in (
            "threads",
            "worker_connections",
            "pool_maxsize",
            "pool_connections",
            "workers",
            "replicas",
            "fleet_connections",
        ):
            _check_count(name, getattr(self, name))
        _check_count("max_response_bytes", self.max_response_bytes)
        _check_count("http_cache_bytes", self.http_cache_bytes)
        _check_count("http_cache_entry_bytes", self.http_cache_entry_bytes)
        _check_whole("retries", self.retries)
        for name in ("pool_timeout", "connect_timeout", "read_timeout", "deadline", "idle_timeout"):
            check_seconds(name, getattr(self, name))
        for name in ("backoff_factor", "backoff_max", "retry_budget_min_per_second"):
            check_seconds(name, getattr(self, name), zero=True)
        if self.worker_timeout is not None:
            check_seconds("worker_timeout", self.worker_timeout, zero=True)
        if not _is_number(self.retry_budget) or not 0 <= self.retry_budget <= 1:
            raise ConfigError(
                f"retry_budget: expected a fraction from 0 to 1, got {self.retry_budget!r}"
            )
        for name in (
            "pool_block",
            "trust_env",
            "propagate",
            "propagate_deadline",
            "allow_unverified",
            "egress_deny_private",
            "prometheus",
        ):
            _check_bool(name, getattr(self, name))
        if self.metrics_path is not None and (
            not isinstance(self.metrics_path, str) or not self.metrics_path.startswith("/")
        ):
            raise ConfigError(
                f"metrics_path: expected a path starting with '/', got {self.metrics_path!r}"
            )
        _check_count("max_redirects", self.max_redirects)
        _check_ca_bundle("ca_bundle", self.ca_bundle)
        object.__setattr__(self, "retry_statuses", _check_statuses(self.retry_statuses))
        object.__setattr__(
            self, "deadline_headers", _check_headers("deadline_headers", self.deadline_headers)
        )
        (request_id_header,) = _check_headers("request_id_header", (self.request_id_header,))
        object.__setattr__(self, "request_id_header", request_id_header)
        object.__setattr__(self, "redirect_headers", _check_redirect_headers(self.redirect_headers))
        for name in ("egress_allow", "egress_deny"):
            object.__setattr__(self, name, _check_networks(name, getattr(self, name)))
        object.__setattr__(self, "upstreams", MappingProxyType(_check_upstreams(self.upstreams)))
        object.__setattr__(self, "proxies", MappingProxyType(_check_proxies(self.proxies)))

    def for_upstream(self, origin: str) -> UpstreamSettings:
        """The effective settings for ``origin`` (``scheme://host:port``): its overrides, else these."""
        override = self.upstreams.get(origin) or UpstreamSettings()
        return UpstreamSettings(
            deadline=override.deadline,
            connect_timeout=_first(override.connect_timeout, self.connect_timeout),
            read_timeout=_first(override.read_timeout, self.read_timeout),
            retries=_first(override.retries, self.retries),
            max_response_bytes=_first(override.max_response_bytes, self.max_response_bytes),
            propagate=_first(override.propagate, self.propagate),
            ca_bundle=_first(override.ca_bundle, self.ca_bundle),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PoolConfig:
        """Settings from ``WSGI_POOL_*`` variables (default: ``os.environ``); unset ones keep their defaults.

        An unknown ``WSGI_POOL_*`` variable or an unparsable value raises :class:`ConfigError`
        naming the variable and the value.
        """
        env = os.environ if environ is None else environ
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, text in env.items():
            if not key.startswith(ENV_PREFIX):
                continue
            name = key[len(ENV_PREFIX) :].lower()
            if name not in fields:
                known = ", ".join(ENV_PREFIX + n.upper() for n in fields)
                raise ConfigError(f"{key}: unknown setting (known: {known})")
            try:
                values[name] = fields[name].metadata["parse"](text)
            except ValueError as exc:
                raise ConfigError(f"{key}={text!r}: {exc}") from None
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (from the {ENV_PREFIX}* environment)") from None

    @classmethod
    def from_gunicorn(
        cls, cfg: GunicornConfig, environ: Mapping[str, str] | None = None
    ) -> PoolConfig:
        """The server's concurrency from gunicorn's ``cfg``, the rest from :meth:`from_env`.

        A ``WSGI_POOL_*`` variable wins over what gunicorn says.
        """
        base = cls.from_env(environ)
        return with_server_defaults(base, server_concurrency(cfg))


SETTINGS_KEY: Final = "WSGI_POOL"
"""The name frameworks keep the pools' settings under (Flask's ``app.config``, Django's ``settings``)."""


def from_settings(key: str, settings: Any) -> PoolConfig | None:
    """A config from a framework's settings under ``key`` (Flask's ``app.config``, Django's
    ``settings``): None, a :class:`PoolConfig`, or a dict of its fields over the
    ``WSGI_POOL_*`` variables. Anything else, an unknown field or a bad value raises
    :class:`ConfigError` naming it."""
    if settings is None or isinstance(settings, PoolConfig):
        return settings
    if not isinstance(settings, dict):
        raise ConfigError(f"{key}: expected a dict of PoolConfig fields, got {settings!r}")
    unknown = sorted(set(settings) - {field.name for field in dataclasses.fields(PoolConfig)})
    if unknown:
        raise ConfigError(f"{key}: unknown setting(s): {', '.join(map(str, unknown))}")
    try:
        return dataclasses.replace(PoolConfig.from_env(), **settings)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _first(value: Any, default: Any) -> Any:
    return default if value is None else value


class GunicornConfig(Protocol):
    """What wsgi_pool reads from ``gunicorn.config.Config`` (``server.cfg``, ``worker.cfg``)."""

    @property
    def worker_class_str(self) -> str: ...

    @property
    def timeout(self) -> int: ...

    @property
    def threads(self) -> int: ...

    @property
    def worker_connections(self) -> int: ...

    @property
    def workers(self) -> int: ...


def server_concurrency(cfg: GunicornConfig) -> PoolConfig:
    """What a gunicorn configuration says about its concurrency, as a config of those fields only.

    gunicorn runs ``sync`` with threads > 1 as ``gthread``; :func:`size_pools` applies the same
    rule. A worker class gunicorn does not ship (a subclass, a third-party worker) is matched
    by the gunicorn classes in its ancestry, and left unknown otherwise.
    """
    kind = normalize_worker_class(str(cfg.worker_class_str))
    if kind is None:
        kind = _kind_from_class(getattr(cfg, "worker_class", None))
    return PoolConfig(
        worker_class=kind,
        threads=cfg.threads if kind is not None else None,
        worker_connections=cfg.worker_connections if kind is not None else None,
        worker_timeout=float(cfg.timeout),
        workers=cfg.workers,
    )


def uwsgi_concurrency(options: Mapping[str, Any]) -> PoolConfig:
    """What uWSGI's options (``uwsgi.opt``) say of a process's concurrency: its ``threads``
    (1 without ``--threads``)."""
    value = options.get("threads", b"1")
    if isinstance(value, list):  # an option given twice: the last one counts
        value = value[-1]
    text = value.decode() if isinstance(value, bytes) else str(value)
    return PoolConfig(threads=int(text) if text.isdigit() and int(text) > 0 else 1)


def _kind_from_class(worker_cls: object) -> str | None:
    for ancestor in getattr(worker_cls, "__mro__", ()):
        kind = _WORKER_ALIASES.get(f"{ancestor.__module__}.{ancestor.__qualname__}")
        if kind is not None:
            return kind
    return None


def with_server_defaults(config: PoolConfig, server: PoolConfig | None) -> PoolConfig:
    """``config`` with its unset concurrency fields taken from what the server reported."""
    if server is None:
        return config
    changes = {
        name: getattr(server, name)
        for name in ("worker_class", "threads", "worker_connections", "worker_timeout", "workers")
        if getattr(config, name) is None and getattr(server, name) is not None
    }
    return dataclasses.replace(config, **changes) if changes else config


def _check_count(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected a whole number >= 1, got {value!r}")


def _check_whole(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name}: expected a whole number >= 0, got {value!r}")


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def check_seconds(name: str, value: object, *, zero: bool = False) -> None:
    if value is None:
        return
    if not _is_number(value) or value < 0 or (value == 0 and not zero):  # type: ignore[operator]
        bound = ">= 0" if zero else "> 0"
        raise ConfigError(f"{name}: expected a finite number of seconds {bound}, got {value!r}")


def _check_statuses(statuses: object) -> frozenset[int]:
    if isinstance(statuses, str | bytes) or not isinstance(statuses, Iterable):
        raise ConfigError(f"retry_statuses: expected status codes, got {statuses!r}")
    found = frozenset(statuses)
    for status in found:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ConfigError(f"retry_statuses: {status!r} is not an HTTP status code")
    return found


def _check_bool(name: str, value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{name}: expected True or False, got {value!r}")


def _check_ca_bundle(name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not os.path.exists(value):
        raise ConfigError(f"{name}: expected the path of a CA file or directory, got {value!r}")


def _check_headers(setting: str, names: object) -> tuple[str, ...]:
    if isinstance(names, str | bytes) or not isinstance(names, Iterable):
        raise ConfigError(f"{setting}: expected header names, got {names!r}")
    found = tuple(names)
    for name in found:
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ConfigError(f"{setting}: {name!r} is not a header name")
    return found


CREDENTIAL_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
"""Headers that never go to another origin on a redirect, whatever ``redirect_headers`` says."""


def _check_redirect_headers(names: object) -> tuple[str, ...]:
    found = {name.lower() for name in _check_headers("redirect_headers", names)}
    credentials = sorted(found & CREDENTIAL_HEADERS)
    if credentials:
        raise ConfigError(
            f"redirect_headers: {', '.join(credentials)} never go to another origin; "
            f"remove them from the list"
        )
    return tuple(sorted(found))


def _check_networks(setting: str, networks: object) -> tuple[str, ...]:
    if isinstance(networks, str | bytes) or not isinstance(networks, Iterable):
        raise ConfigError(f"{setting}: expected networks like '10.0.0.0/8', got {networks!r}")
    checked = []
    for network in networks:
        try:
            checked.append(str(ipaddress.ip_network(network, strict=False)))
        except (TypeError, ValueError):
            raise ConfigError(
                f"{setting}: {network!r} is not an address or network like '10.0.0.0/8'"
            ) from None
    return tuple(checked)


def _upstream_settings(origin: str, settings: object) -> UpstreamSettings:
    if isinstance(settings, UpstreamSettings):
        return settings
    if not isinstance(settings, Mapping):
        raise ConfigError(
            f"upstreams[{origin!r}]: expected UpstreamSettings or a mapping, got {settings!r}"
        )
    try:
        return UpstreamSettings(**settings)
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"upstreams[{origin!r}]: {exc}") from None


def _check_upstreams(upstreams: object) -> dict[str, UpstreamSettings]:
    if not isinstance(upstreams, Mapping):
        raise ConfigError(f"upstreams: expected a mapping of origin to settings, got {upstreams!r}")
    checked: dict[str, UpstreamSettings] = {}
    for origin, settings in upstreams.items():
        try:
            key = normalize_origin(origin) if isinstance(origin, str) else None
        except ValueError as exc:
            raise ConfigError(f"upstreams: {exc}") from None
        if key is None:
            raise ConfigError(f"upstreams: {origin!r} is not an origin like https://host[:port]")
        checked[key] = _upstream_settings(origin, settings)
    return checked


def _check_proxies(proxies: object) -> dict[str, str]:
    if not isinstance(proxies, Mapping):
        raise ConfigError(f"proxies: expected a mapping of scheme to proxy URL, got {proxies!r}")
    checked: dict[str, str] = {}
    for key, url in proxies.items():
        if not isinstance(key, str) or not isinstance(url, str):
            raise ConfigError(f"proxies: expected text keys and URLs, got {key!r}: {url!r}")
        parts = urlsplit(url)
        if not parts.scheme or not parts.hostname:
            raise ConfigError(f"proxies[{key!r}]: {url!r} is not a proxy URL like http://host:port")
        checked[key] = url
    return checked


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSizing:
    """The pool settings a worker uses, each with the reason for its value."""

    pool_maxsize: int
    pool_connections: int
    pool_block: bool
    pool_timeout: float
    deadline: float
    reasons: Mapping[str, str]
    """Why each setting has its value, by setting name."""
    warnings: tuple[str, ...] = ()
    """Settings that work against each other, each explained in one sentence."""

    def describe(self) -> str:
        """One line: every setting, its value and why."""
        return "; ".join(
            f"{name}={getattr(self, name)!r} ({self.reasons[name]})"
            for name in (
                "pool_maxsize",
                "pool_connections",
                "pool_block",
                "pool_timeout",
                "deadline",
            )
        )


def size_pools(config: PoolConfig) -> PoolSizing:
    """The pool settings for one worker: explicit settings win, the rest follow the server.

    ``sync`` -> 1; ``gthread`` (or ``sync`` with threads > 1) -> threads; ``gevent`` ->
    ``worker_connections`` capped at :data:`GEVENT_POOL_CAP`; ``tornado`` -> 1; an unknown
    server -> its ``threads`` if given, else requests' default of 10.
    """
    if config.pool_maxsize is not None:
        maxsize, why_size = config.pool_maxsize, "set explicitly"
    else:
        maxsize, why_size = _maxsize_for_server(config)
    share = fleet_share(config)
    if share is not None and share < maxsize:
        maxsize, why_size = share, f"{fleet_reason(config)}, below {maxsize} ({why_size})"
    connections, why_connections = (
        (config.pool_connections, "set explicitly")
        if config.pool_connections is not None
        else (DEFAULT_HOST_POOLS, "default: requests' number of per-host pools")
    )
    block, why_block = (
        (config.pool_block, "set explicitly")
        if config.pool_block is not None
        else (True, "default: wait for a free connection rather than open one to throw away")
    )
    timeout, why_timeout = (
        (config.pool_timeout, "set explicitly")
        if config.pool_timeout is not None
        else (DEFAULT_POOL_TIMEOUT, "default: a bounded wait for a free connection")
    )
    deadline, why_deadline = _deadline(config)
    return PoolSizing(
        pool_maxsize=maxsize,
        pool_connections=connections,
        pool_block=block,
        pool_timeout=float(timeout),
        deadline=float(deadline),
        reasons=MappingProxyType(
            {
                "pool_maxsize": why_size,
                "pool_connections": why_connections,
                "pool_block": why_block,
                "pool_timeout": why_timeout,
                "deadline": why_deadline,
            }
        ),
        warnings=_conflicts(config, deadline, maxsize=maxsize, block=block),
    )


def fleet_share(config: PoolConfig) -> int | None:
    """A worker's share of the fleet budget: fleet_connections // (replicas x workers), at least 1."""
    if config.fleet_connections is None:
        return None
    return max(1, config.fleet_connections // ((config.replicas or 1) * (config.workers or 1)))


def fleet_reason(config: PoolConfig) -> str:
    """How :func:`fleet_share` came to its number, in words."""
    return (
        f"fleet budget: {config.fleet_connections} connections / ({config.replicas or 1} "
        f"replicas x {config.workers or 1} workers)"
    )


def _deadline(config: PoolConfig) -> tuple[float, str]:
    if config.deadline is not None:
        return config.deadline, "set explicitly"
    worker_timeout = config.worker_timeout
    if worker_timeout:
        share = worker_timeout * DEADLINE_SHARE_OF_WORKER_TIMEOUT
        if share < DEFAULT_DEADLINE:
            return share, f"3/4 of the worker timeout of {worker_timeout:g} s"
        return DEFAULT_DEADLINE, f"default, below the worker timeout of {worker_timeout:g} s"
    return DEFAULT_DEADLINE, "default"


def _conflicts(
    config: PoolConfig, deadline: float, *, maxsize: int, block: bool
) -> tuple[str, ...]:
    found = []
    concurrency = _concurrency(config)
    if config.fleet_connections is not None:
        if config.workers is None:
            found.append(
                "fleet_connections is set but the number of workers is unknown (no gunicorn "
                "hooks, no WSGI_POOL_WORKERS): each worker takes the whole replica's share"
            )
        if not block:
            found.append(
                "pool_block=False with fleet_connections: a worker opens connections past its "
                "share of the fleet budget and throws them away"
            )
        share = fleet_share(config) or 1
        if share * (config.replicas or 1) * (config.workers or 1) > config.fleet_connections:
            found.append(
                f"fleet_connections={config.fleet_connections} is less than one connection per "
                f"worker ({config.replicas or 1} replicas x {config.workers or 1} workers): "
                f"each worker keeps 1, over the budget"
            )
    if not block and concurrency is not None and concurrency > maxsize:
        found.append(
            f"{concurrency} concurrent requests per worker over pool_maxsize={maxsize} with "
            f"pool_block=False: extra connections are opened and thrown away (urllib3's "
            f'"Connection pool is full, discarding connection"); set pool_block=True or '
            f"pool_maxsize>={concurrency}"
        )
    if config.worker_class == "gevent" and (not block or maxsize > GEVENT_POOL_CAP):
        found.append(
            f"gevent worker with pool_maxsize={maxsize} and pool_block={block}: up to "
            f"{concurrency or 1000} greenlets can each open a connection per upstream; cap it "
            f"(pool_block=True, pool_maxsize<={GEVENT_POOL_CAP})"
        )
    timeout = config.worker_timeout
    if timeout and deadline >= timeout:
        found.append(
            f"deadline={deadline:g} s is not below the worker timeout of {timeout:g} s: a sync "
            f"worker is killed before a slow call ends, and its client gets no clean error"
        )
    found.extend(
        f"upstreams[{origin!r}].deadline={settings.deadline:g} s is not below the worker "
        f"timeout of {timeout:g} s"
        for origin, settings in config.upstreams.items()
        if timeout and settings.deadline is not None and settings.deadline >= timeout
    )
    return tuple(found)


def _concurrency(config: PoolConfig) -> int | None:
    """Concurrent WSGI calls per worker, as the server's settings say; None if unknown."""
    kind = config.worker_class
    if kind == "gevent":
        return config.worker_connections or 1000
    if kind in {"gthread", "sync"}:
        return config.threads or 1
    if kind == "tornado":
        return 1
    return config.threads


def _maxsize_for_server(config: PoolConfig) -> tuple[int, str]:  # noqa: PLR0911  (one return per row of the sizing table)
    kind, threads = config.worker_class, config.threads
    if kind == "gevent":
        wanted = config.worker_connections or 1000
        if wanted > GEVENT_POOL_CAP:
            return (
                GEVENT_POOL_CAP,
                f"gevent worker: worker_connections={wanted} capped at {GEVENT_POOL_CAP}",
            )
        return wanted, f"gevent worker: worker_connections={wanted}"
    if kind == "gthread":
        count = threads or 1
        return count, f"gthread worker with {count} thread{'s' if count > 1 else ''}"
    if kind == "sync":
        if threads and threads > 1:
            return threads, f"sync worker with {threads} threads runs as gthread"
        return 1, "sync worker: one request at a time"
    if kind == "tornado":
        return 1, "tornado worker: one WSGI call at a time"
    if threads:
        return threads, f"server concurrency unknown; threads={threads}"
    return (
        UNKNOWN_SERVER_MAXSIZE,
        "server concurrency unknown (no gunicorn hooks, no worker_class or threads set): "
        "requests' default",
    )
