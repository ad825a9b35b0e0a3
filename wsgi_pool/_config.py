"""The configuration: one frozen value per way the pools and their calls are set up.

:class:`PoolConfig` holds every setting, each documented on its field together with the
parser of its ``WSGI_POOL_*`` variable; :class:`UpstreamSettings` holds what one upstream
sets differently. Both are validated when made (``_checks``), so a bad value stops the
server at start-up. What the server reports of its concurrency completes a config
(:meth:`PoolConfig.completed_by`); what the settings mean for the pools' sizes is
``_sizing``'s business, how upstreams are named ``_origins``'.

This module imports nothing from requests, urllib3 or gunicorn: it runs in the gunicorn
master (``on_starting``) to reject a bad setting before any worker is forked.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from . import _checks, _env
from ._errors import ConfigError
from ._origins import normalize_origin
from ._servers import (
    WORKER_CLASSES,
    GunicornConfig,
    ServerReport,
    gunicorn_report,
    normalize_worker_class,
)

DEFAULT_HOST_POOLS: Final = 10
"""Per-host pools kept (LRU) when ``pool_connections`` is not set: requests' default."""

DEFAULT_POOL_TIMEOUT: Final = 5.0
"""Seconds a call waits for a free pooled connection when ``pool_timeout`` is not set."""

DEFAULT_DEADLINE: Final = 20.0
"""Seconds a whole call may take when ``deadline`` is not set and the worker timeout allows."""

MIB: Final = 1024 * 1024

DEADLINE_HEADER: Final = "X-Request-Deadline"
"""The header that carries a remaining budget in milliseconds, in and (``propagate_deadline``) out."""

REQUEST_ID_HEADER: Final = "X-Request-ID"
"""The default header of the request id."""

SETTINGS_KEY: Final = "WSGI_POOL"
"""The name frameworks keep the pools' settings under (Flask's ``app.config``, Django's ``settings``)."""

_CONCURRENCY: Final = ("worker_class", "threads", "worker_connections", "worker_timeout", "workers")

POOL_FIELDS: Final = (
    *_CONCURRENCY,
    "replicas",
    "fleet_connections",
    "pool_maxsize",
    "pool_connections",
    "pool_block",
    "pool_timeout",
    "idle_timeout",
    "max_connection_age",
    "max_requests_per_connection",
    "eject_after_failures",
    "eject_after_5xx",
    "fail_fast_when_ejected",
    "ejection_time",
    "max_ejection_time",
    "max_pending",
    "egress_allow",
    "egress_deny",
    "egress_deny_private",
    "trust_env",
    "proxies",
    "http_cache_bytes",
    "http_cache_entry_bytes",
    "prometheus",
    "opentelemetry",
    "metrics_path",
)
"""The settings that shape a process's pools; the others shape each call (``_policy``)."""


def _setting(default: Any, doc: str, parse: Callable[[str], Any]) -> Any:
    """A config field whose documentation and environment parser live on the field."""
    if isinstance(default, dict):
        return field(default_factory=dict, hash=False, metadata={"doc": doc, "parse": parse})
    return field(default=default, metadata={"doc": doc, "parse": parse})


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
    idle_timeout: float | None = None
    """Seconds a connection to this upstream may sit idle (below its server's keep-alive)."""
    max_connection_age: float | None = None
    """Seconds a connection to this upstream may live (see the config's)."""

    def __post_init__(self) -> None:
        for name in (
            "deadline",
            "connect_timeout",
            "read_timeout",
            "idle_timeout",
            "max_connection_age",
        ):
            _checks.seconds(name, getattr(self, name))
        _checks.count("max_response_bytes", self.max_response_bytes)
        _checks.whole("retries", self.retries)
        _checks.boolean("propagate", self.propagate)
        _checks.ca_bundle("ca_bundle", self.ca_bundle)


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
        _env.parse_str,
    )
    threads: int | None = _setting(
        None, "Threads per worker. None: as the gunicorn hooks report it.", _env.parse_int
    )
    worker_connections: int | None = _setting(
        None,
        "Concurrent clients per gevent worker. None: as the gunicorn hooks report it.",
        _env.parse_int,
    )
    workers: int | None = _setting(
        None,
        "Worker processes per server (gunicorn's workers). None: as the gunicorn hooks report "
        "it. Only the fleet budget uses it.",
        _env.parse_int,
    )
    replicas: int | None = _setting(
        None,
        "Copies of this server that call the same upstreams (pods, machines), as the "
        "orchestrator sets it (WSGI_POOL_REPLICAS). Only the fleet budget uses it; None: 1.",
        _env.parse_int,
    )
    fleet_connections: int | None = _setting(
        None,
        "Connections all replicas together may hold to any one upstream. Each worker's "
        "pool_maxsize becomes at most fleet_connections // (replicas x workers), at least 1, "
        "and calls over it wait (pool_block). None: no fleet budget.",
        _env.parse_optional_int,
    )
    pool_maxsize: int | None = _setting(
        None,
        "Connections kept per upstream (scheme, host, port) in each worker. None: derived "
        "from the server's concurrency.",
        _env.parse_int,
    )
    pool_connections: int | None = _setting(
        None,
        f"Per-upstream pools kept per worker, least recently used dropped first. "
        f"None: {DEFAULT_HOST_POOLS}.",
        _env.parse_int,
    )
    pool_block: bool | None = _setting(
        None,
        "When every pooled connection to an upstream is busy, wait for one (True) or open "
        "an extra one that is discarded afterwards (False). None: True.",
        _env.parse_bool,
    )
    pool_timeout: float | None = _setting(
        None,
        f"Seconds a call waits for a free pooled connection before raising PoolTimeout. "
        f"None: {DEFAULT_POOL_TIMEOUT:g}.",
        _env.parse_float,
    )
    connect_timeout: float = _setting(
        5.0,
        "Seconds to establish a connection, when the caller gives no timeout.",
        _env.parse_float,
    )
    read_timeout: float = _setting(
        15.0,
        "Seconds to wait for each read from the upstream, when the caller gives no timeout.",
        _env.parse_float,
    )
    worker_timeout: float | None = _setting(
        None,
        "gunicorn's worker timeout in seconds (0: none), which the derived deadline stays "
        "below. None: as the gunicorn hooks report it.",
        _env.parse_float,
    )
    deadline: float | None = _setting(
        None,
        f"Seconds a whole call may take: waiting for a pooled connection, connecting, "
        f"retries and their backoff, redirects and reading the body. None: "
        f"{DEFAULT_DEADLINE:g}, or 3/4 of the worker timeout when that is less.",
        _env.parse_float,
    )
    idle_timeout: float = _setting(
        4.0,
        "Seconds a pooled connection may sit idle before it is closed rather than reused: "
        "below the keep-alive timeout of common servers (5 s in Node.js, Apache, uvicorn).",
        _env.parse_float,
    )
    max_connection_age: float | None = _setting(
        60.0,
        "Seconds a connection may live: one older is closed when it comes back to the pool "
        "(never in the middle of a call), each connection's age shortened by up to 10% at "
        "random so those opened together do not all close together. A busy pool is never "
        "idle, so without it a name that moved or a replica added behind a balancer never "
        "gets the pool's traffic. None: no limit.",
        _env.parse_optional_float,
    )
    max_requests_per_connection: int | None = _setting(
        None,
        "Requests a connection carries before it is closed (when it comes back to the "
        "pool). None: no limit.",
        _env.parse_optional_int,
    )
    eject_after_failures: int | None = _setting(
        3,
        "Consecutive failed connects to one address (refused, unreachable, timed out) that "
        "eject it: new connections skip it for ejection_time, longer each time it is ejected "
        "again, until one connect to it succeeds. When every address of a host is ejected, "
        "all are tried (see fail_fast_when_ejected). Per worker, never a proxy's address. "
        "None: never eject.",
        _env.parse_optional_int,
    )
    fail_fast_when_ejected: bool = _setting(
        False,
        "When every address of a host is ejected and one of them timed out (or answered 5xx), "
        "fail calls at once with UpstreamEjected instead of each waiting its connect timeout. "
        "Off: behind one address (a Kubernetes ClusterIP, a load balancer) a streak of failed "
        "connects may come from one bad replica among many.",
        _env.parse_bool,
    )
    eject_after_5xx: int | None = _setting(
        None,
        "Consecutive 5xx answers from one address that eject it, as connect failures do. "
        "None: answers never eject (one request's input can make a healthy host answer 500, "
        "and behind a load balancer the address is the balancer's).",
        _env.parse_optional_int,
    )
    ejection_time: float = _setting(
        10.0,
        "Seconds an address stays ejected the first time; each further ejection without a "
        "success in between adds as much again, up to max_ejection_time. When it ends, one "
        "call probes the address.",
        _env.parse_float,
    )
    max_ejection_time: float = _setting(
        60.0,
        "Longest ejection, seconds: how late a recovered upstream may be noticed.",
        _env.parse_float,
    )
    max_pending: int | None = _setting(
        None,
        "Calls that may wait for a connection to one upstream at once (per worker); one more "
        "fails at once with PoolOverloaded instead of waiting pool_timeout. None: no cap (the "
        "derived pool_maxsize gives every thread a connection, so calls wait only under a "
        "fleet budget or a pool_maxsize set below the concurrency).",
        _env.parse_optional_int,
    )
    mesh: bool = _setting(
        False,
        "Calls go through a service mesh's sidecar (Envoy, Istio, linkerd), which balances "
        "and retries them: no status retries of our own, each try tells the sidecar the time "
        "left as x-envoy-upstream-rq-timeout-ms, and no fleet budget (the mesh limits "
        "connections per host). Egress policy, size caps, isolation and metrics stay.",
        _env.parse_bool,
    )
    retries: int = _setting(
        2,
        "Retries after a connect failure (nothing was sent, any method) or a retry_statuses "
        "response (idempotent methods, or an Idempotency-Key header, only). 0: none.",
        _env.parse_int,
    )
    retry_statuses: frozenset[int] = _setting(
        frozenset({429, 503}),
        "Response statuses that are retried (environment: '429,503').",
        _env.parse_statuses,
    )
    backoff_factor: float = _setting(
        0.1,
        "Seconds before the first retry, doubling with each retry up to backoff_max, with "
        "jitter. A Retry-After header wins; one that ends past the deadline stops retrying.",
        _env.parse_float,
    )
    backoff_max: float = _setting(
        2.0, "Longest backoff between retries, seconds.", _env.parse_float
    )
    retry_budget: float = _setting(
        0.2,
        "Retries to one upstream may add at most this fraction to its requests of the last "
        "10 s (per worker), plus retry_budget_min_per_second: a failing upstream gets no "
        "retry storm.",
        _env.parse_float,
    )
    retry_budget_min_per_second: float = _setting(
        10.0,
        "Retries per second always allowed to each upstream, so one with little traffic can "
        "still be retried.",
        _env.parse_float,
    )
    max_response_bytes: int | None = _setting(
        64 * MIB,
        "Largest response body, counted after decompression (a gzip bomb stops early); "
        "larger raises ResponseTooLarge. Redirect bodies are never decoded. None: no limit.",
        _env.parse_optional_int,
    )
    http_cache_bytes: int | None = _setting(
        None,
        "Memory per worker for an HTTP cache of GET responses (CacheControl; install "
        "wsgi_pool[cache]): fresh ones are answered without a call, stale ones revalidated "
        "with their ETag or Last-Modified. A shared cache: requests with Authorization or "
        "Cookie, and private or cookie-setting responses, are never stored. None: no cache.",
        _env.parse_optional_int,
    )
    http_cache_entry_bytes: int = _setting(
        MIB, "Largest response body the HTTP cache stores.", _env.parse_int
    )
    deadline_headers: tuple[str, ...] = _setting(
        (DEADLINE_HEADER, "X-Envoy-Expected-Rq-Timeout-Ms"),
        "Incoming request headers carrying the caller's remaining budget in milliseconds, "
        "or its end as an ISO-8601 instant with a time zone (the first valid one counts); outbound calls never outlive it. A budget only ever "
        "shortens the deadline. Empty: ignore them.",
        _env.parse_names,
    )
    propagate: bool = _setting(
        False,
        "Send every upstream the incoming request's id and W3C trace context (validated; "
        "fresh ones when absent or invalid). Off: only upstreams whose settings say "
        "propagate=True get them; third parties see none.",
        _env.parse_bool,
    )
    propagate_deadline: bool = _setting(
        False,
        f"Also send the upstreams that get propagation the call's remaining budget in "
        f"milliseconds, as {DEADLINE_HEADER}.",
        _env.parse_bool,
    )
    request_id_header: str = _setting(
        REQUEST_ID_HEADER,
        "The header that carries the request id, in (validated) and out (to upstreams that "
        "get propagation).",
        _env.parse_str,
    )
    upstreams: Mapping[str, UpstreamSettings] = _setting(
        {},
        "Per-upstream settings that win over these: deadline, connect_timeout, read_timeout, "
        "retries, max_response_bytes, propagate, ca_bundle, idle_timeout, max_connection_age, "
        "by origin (environment: JSON, "
        '\'{"https://search.internal": {"deadline": 2.5, "propagate": true}}\').',
        _env.parse_upstreams,
    )
    max_redirects: int = _setting(
        5,
        "Redirects a call follows before raising TooManyRedirects (a client's own "
        "max_redirects can only lower it).",
        _env.parse_int,
    )
    redirect_headers: tuple[str, ...] = _setting(
        ("accept", "accept-encoding", "accept-language", "user-agent"),
        "The only headers a redirect to another origin carries on (environment: "
        "'Accept,User-Agent'). Credentials (Authorization, Cookie, Proxy-Authorization) "
        "never cross origins, and cannot be listed.",
        _env.parse_names,
    )
    ca_bundle: str | None = _setting(
        None,
        "CA certificates (a PEM file or a hashed directory) that verify every upstream "
        "without its own ca_bundle. None: certifi's. Read from WSGI_POOL_CA_BUNDLE only, never "
        "from REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE.",
        _env.parse_optional_str,
    )
    allow_unverified: bool = _setting(
        False,
        "Let a call pass verify=False. Off: such a call raises InsecureRequestRefused. On: "
        "it still never shares a pooled connection with verified calls.",
        _env.parse_bool,
    )
    egress_allow: tuple[str, ...] = _setting(
        (),
        "Networks calls may connect to (CIDR, environment: '10.0.0.0/8,fd00::/8'); any "
        "other address is refused. Empty: no allowlist.",
        _env.parse_names,
    )
    egress_deny: tuple[str, ...] = _setting(
        (),
        "Networks calls may never connect to (CIDR); wins over egress_allow.",
        _env.parse_names,
    )
    egress_deny_private: bool = _setting(
        False,
        "Refuse every address that is not globally routable: loopback, private, link-local "
        "(cloud metadata at 169.254.169.254 included), shared, reserved, unique-local "
        "(fd00:ec2::254). An address listed in egress_allow is still allowed.",
        _env.parse_bool,
    )
    trust_env: bool = _setting(
        False,
        "Read HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY from the process environment, "
        "once, when a worker builds its pools. Never per call, never .netrc or CA bundle "
        "variables, never from an incoming request.",
        _env.parse_bool,
    )
    prometheus: bool = _setting(
        False,
        "Keep Prometheus metrics of the pools in prometheus_client (needs "
        "wsgi_pool[prometheus]; see wsgi_pool.prometheus for gunicorn's many processes).",
        _env.parse_bool,
    )
    opentelemetry: bool = _setting(
        False,
        "Record OpenTelemetry metrics of the calls and pools, named by the HTTP client "
        "semantic conventions (http.client.request.duration...), on the meter provider the app "
        "sets up (needs wsgi_pool[otel]).",
        _env.parse_bool,
    )
    metrics_path: str | None = _setting(
        None,
        "A path the middleware answers with the Prometheus exposition (turns prometheus on); "
        "None: no endpoint.",
        _env.parse_optional_str,
    )
    proxies: Mapping[str, str] = _setting(
        {},
        "Proxies by scheme or 'scheme://host', as in requests (environment: "
        "'http=http://proxy:3128,https=http://proxy:3128'). They win over trust_env.",
        _env.parse_proxies,
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
            "max_response_bytes",
            "http_cache_bytes",
            "http_cache_entry_bytes",
            "max_redirects",
            "max_requests_per_connection",
            "eject_after_failures",
            "eject_after_5xx",
            "max_pending",
        ):
            _checks.count(name, getattr(self, name))
        _checks.whole("retries", self.retries)
        for name in (
            "pool_timeout",
            "connect_timeout",
            "read_timeout",
            "deadline",
            "idle_timeout",
            "max_connection_age",
            "ejection_time",
            "max_ejection_time",
        ):
            _checks.seconds(name, getattr(self, name))
        for name in ("backoff_factor", "backoff_max", "retry_budget_min_per_second"):
            _checks.seconds(name, getattr(self, name), zero=True)
        _checks.seconds("worker_timeout", self.worker_timeout, zero=True)
        _checks.fraction("retry_budget", self.retry_budget)
        for name in (
            "pool_block",
            "trust_env",
            "propagate",
            "propagate_deadline",
            "allow_unverified",
            "egress_deny_private",
            "prometheus",
            "opentelemetry",
            "mesh",
            "fail_fast_when_ejected",
        ):
            _checks.boolean(name, getattr(self, name))
        for name in ("ejection_time", "max_ejection_time"):
            if getattr(self, name) is None:
                raise ConfigError(f"{name}: expected a finite number of seconds > 0, got None")
        if self.max_pending is not None and self.pool_block is False:
            raise ConfigError(
                f"max_pending: {self.max_pending!r} has no effect with pool_block=False (calls "
                f"never wait: they open extra connections); unset one of them"
            )
        if self.mesh and self.fleet_connections is not None:
            raise ConfigError(
                f"fleet_connections: {self.fleet_connections!r} is not used with mesh=True (the "
                f"mesh limits connections per host); unset one of them"
            )
        if self.max_ejection_time < self.ejection_time:
            raise ConfigError(
                f"max_ejection_time: {self.max_ejection_time!r} is below ejection_time="
                f"{self.ejection_time!r}; raise it or lower ejection_time"
            )
        _checks.path("metrics_path", self.metrics_path)
        _checks.ca_bundle("ca_bundle", self.ca_bundle)
        canonical = {
            "retry_statuses": _checks.statuses(self.retry_statuses),
            "deadline_headers": _checks.headers("deadline_headers", self.deadline_headers),
            "request_id_header": _checks.headers("request_id_header", (self.request_id_header,))[0],
            "redirect_headers": _checks.redirect_headers(self.redirect_headers),
            "egress_allow": _checks.networks("egress_allow", self.egress_allow),
            "egress_deny": _checks.networks("egress_deny", self.egress_deny),
            "upstreams": MappingProxyType(_upstreams(self.upstreams)),
            "proxies": MappingProxyType(_checks.proxies(self.proxies)),
        }
        for name, value in canonical.items():
            object.__setattr__(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its fields (the read-only mappings as dicts), checked again when loaded."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields.update(upstreams=dict(self.upstreams), proxies=dict(self.proxies))
        return (_unpickle, (fields,))

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
            idle_timeout=_first(override.idle_timeout, self.idle_timeout),
            max_connection_age=_first(override.max_connection_age, self.max_connection_age),
        )

    def pool_shape(self) -> tuple[object, ...]:
        """The values of :data:`POOL_FIELDS` and the upstreams' connection lifetimes: configs
        equal in these share one set of pools."""
        lifetimes = tuple(
            (origin, settings.idle_timeout, settings.max_connection_age)
            for origin, settings in sorted(self.upstreams.items())
            if settings.idle_timeout is not None or settings.max_connection_age is not None
        )
        return (
            *(
                tuple(sorted(value.items())) if isinstance(value, Mapping) else value
                for value in (getattr(self, name) for name in POOL_FIELDS)
            ),
            lifetimes,
        )

    def completed_by(self, server: ServerReport | None) -> PoolConfig:
        """This config with its unset concurrency fields taken from what the server reported."""
        if server is None:
            return self
        changes = {
            name: getattr(server, name)
            for name in _CONCURRENCY
            if getattr(self, name) is None and getattr(server, name) is not None
        }
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PoolConfig:
        """Settings from ``WSGI_POOL_*`` variables (default: ``os.environ``); unset ones keep their defaults.

        An unknown ``WSGI_POOL_*`` variable or an unparsable value raises :class:`ConfigError`
        naming the variable and the value.
        """
        environ = os.environ if environ is None else environ
        values = _env.read(environ, _PARSERS)
        try:
            return cls(**values)
        except ConfigError as exc:
            field = re.match(r"\w*", str(exc))
            variable = _env.ENV_PREFIX + (field.group() if field else "").upper()
            source = (
                f"{variable}={environ[variable]!r}"
                if variable in environ
                else f"the {_env.ENV_PREFIX}* environment"
            )
            raise ConfigError(f"{exc} (from {source})") from None

    @classmethod
    def from_gunicorn(
        cls, cfg: GunicornConfig, environ: Mapping[str, str] | None = None
    ) -> PoolConfig:
        """The server's concurrency from gunicorn's ``cfg``, the rest from :meth:`from_env`.

        A ``WSGI_POOL_*`` variable wins over what gunicorn says.
        """
        return cls.from_env(environ).completed_by(gunicorn_report(cfg))


_PARSERS: Final = MappingProxyType(
    {item.name: item.metadata["parse"] for item in dataclasses.fields(PoolConfig)}
)


def from_settings(key: str, settings: Any) -> PoolConfig | None:
    """A config from a framework's settings under ``key`` (Flask's ``app.config``, Django's
    ``settings``): None, a :class:`PoolConfig`, or a dict of its fields over the
    ``WSGI_POOL_*`` variables. Anything else, an unknown field or a bad value raises
    :class:`ConfigError` naming it."""
    if settings is None or isinstance(settings, PoolConfig):
        return settings
    if not isinstance(settings, dict):
        raise ConfigError(f"{key}: expected a dict of PoolConfig fields, got {settings!r}")
    unknown = sorted(set(settings) - set(_PARSERS))
    if unknown:
        raise ConfigError(f"{key}: unknown setting(s): {', '.join(map(str, unknown))}")
    try:
        return dataclasses.replace(PoolConfig.from_env(), **settings)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _first(value: Any, default: Any) -> Any:
    return default if value is None else value


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


def _unpickle(fields: dict[str, Any]) -> PoolConfig:
    return PoolConfig(**fields)


def _upstreams(upstreams: object) -> dict[str, UpstreamSettings]:
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
