"""The optional integrations a config turns on: checked at start-up, attached to each process's pools.

- Prometheus (``prometheus`` or ``metrics_path``; the ``prometheus`` extra): ``wsgi_pool.prometheus``;
- the HTTP cache (``http_cache_bytes``; the ``cache`` extra): ``wsgi_pool._cache``;
- OpenTelemetry metrics (``opentelemetry``; the ``otel`` extra): ``wsgi_pool._otel``.

:func:`check` is called where the server starts (the gunicorn hooks' ``on_starting``, the
middleware and the framework adapters when they are made, ``wsgi-pool explain``): a package
that is missing stops the server there with one line naming the setting and the fix, never a
call. :func:`install` registers the factories with the process registry, which attaches what
they make to every process's pools; the core imports none of these modules.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from . import _process
from ._config import PoolConfig
from ._errors import ConfigError

if TYPE_CHECKING:
    from ._worker import Extension

MULTIPROCESS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def _needs(config: PoolConfig) -> list[tuple[str, str, str]]:
    """(setting, module, extra) for each optional package the config needs."""
    needed = []
    if config.prometheus or config.metrics_path:
        setting = (
            f"metrics_path={config.metrics_path!r}" if config.metrics_path else "prometheus=True"
        )
        needed.append((setting, "prometheus_client", "prometheus"))
    if config.http_cache_bytes is not None:
        needed.append((f"http_cache_bytes={config.http_cache_bytes}", "cachecontrol", "cache"))
    if config.opentelemetry:
        needed.append(("opentelemetry=True", "opentelemetry.metrics", "otel"))
    return needed


def check(
    config: PoolConfig, environ: Mapping[str, str] | None = None, *, here: bool = True
) -> list[str]:
    """Raise :class:`ConfigError` if the config turns on an integration whose package is
    missing, or Prometheus with a ``PROMETHEUS_MULTIPROC_DIR`` that is not a writable
    directory (only ``here``: where the server runs, not where ``explain`` reads its
    configuration); what is merely unwise, as warnings."""
    for setting, module, extra in _needs(config):
        if not _installed(module):
            raise ConfigError(
                f"{setting} needs the {module} package, which is not installed: "
                f"pip install 'wsgi_pool[{extra}]' (or turn the setting off)"
            )
    if not (config.prometheus or config.metrics_path):
        return []
    environ = os.environ if environ is None else environ
    directory = environ.get(MULTIPROCESS_ENV)
    if directory:
        if here and (not os.path.isdir(directory) or not os.access(directory, os.W_OK)):
            raise ConfigError(
                f"{MULTIPROCESS_ENV}={directory!r} is not a writable directory: create it "
                f"(empty) before the server starts, or unset it with a single worker"
            )
        return []
    if (config.workers or 1) > 1:
        return [
            f"Prometheus metrics with {config.workers} workers and no {MULTIPROCESS_ENV}: each "
            f"worker answers a scrape with its own numbers, so counters jump between workers; "
            f"set {MULTIPROCESS_ENV} to an empty directory before gunicorn starts"
        ]
    return []


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def _prometheus(config: PoolConfig) -> Extension | None:
    if not (config.prometheus or config.metrics_path):
        return None
    from .prometheus import Exporter  # noqa: PLC0415  (prometheus_client is optional)

    return Exporter()


def _cache(config: PoolConfig) -> Extension | None:
    if config.http_cache_bytes is None:
        return None
    from ._cache import CacheExtension  # noqa: PLC0415  (CacheControl is optional)

    return CacheExtension(config.http_cache_bytes, config.http_cache_entry_bytes)


def _opentelemetry(config: PoolConfig) -> Extension | None:
    if not config.opentelemetry:
        return None
    from ._otel import OpenTelemetryMetrics  # noqa: PLC0415  (opentelemetry-api is optional)

    return OpenTelemetryMetrics()


def install() -> None:
    """Attach the integrations to every process's pools, as each config asks."""
    _process.register(_cache)
    _process.register(_prometheus)
    _process.register(_opentelemetry)
