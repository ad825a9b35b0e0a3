"""Configuration: one frozen value, and the one pure function that sizes the pools.

This module imports nothing from requests, urllib3 or gunicorn: it runs in the gunicorn
master (``on_starting``) to reject a bad setting before any worker is forked.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
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
    trust_env: bool = _setting(
        False,
        "Read HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY from the process environment, "
        "once, when a worker builds its pools. Never per call, never .netrc, never from an "
        "incoming request.",
        _parse_bool,
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
        for name in ("threads", "worker_connections", "pool_maxsize", "pool_connections"):
            _check_count(name, getattr(self, name))
        for name in ("pool_timeout", "connect_timeout", "read_timeout"):
            _check_seconds(name, getattr(self, name))
        for name in ("pool_block", "trust_env"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ConfigError(f"{name}: expected True or False, got {value!r}")
        object.__setattr__(self, "proxies", MappingProxyType(_check_proxies(self.proxies)))

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


class GunicornConfig(Protocol):
    """What wsgi_pool reads from ``gunicorn.config.Config`` (``server.cfg``, ``worker.cfg``)."""

    @property
    def worker_class_str(self) -> str: ...

    @property
    def threads(self) -> int: ...

    @property
    def worker_connections(self) -> int: ...


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
    )


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
        for name in ("worker_class", "threads", "worker_connections")
        if getattr(config, name) is None and getattr(server, name) is not None
    }
    return dataclasses.replace(config, **changes) if changes else config


def _check_count(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected a whole number >= 1, got {value!r}")


def _check_seconds(name: str, value: object) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{name}: expected a finite number of seconds > 0, got {value!r}")


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
    reasons: Mapping[str, str]
    """Why each setting has its value, by setting name."""

    def describe(self) -> str:
        """One line: every setting, its value and why."""
        return "; ".join(
            f"{name}={getattr(self, name)!r} ({self.reasons[name]})"
            for name in ("pool_maxsize", "pool_connections", "pool_block", "pool_timeout")
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
    return PoolSizing(
        pool_maxsize=maxsize,
        pool_connections=connections,
        pool_block=block,
        pool_timeout=float(timeout),
        reasons=MappingProxyType(
            {
                "pool_maxsize": why_size,
                "pool_connections": why_connections,
                "pool_block": why_block,
                "pool_timeout": why_timeout,
            }
        ),
    )


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
