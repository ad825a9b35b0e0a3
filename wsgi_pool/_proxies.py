"""Proxies: which ones a process's calls use, read once, and whether a host bypasses them.

Never per call and never from an incoming request (httpoxy): the config's ``proxies``, and
with ``trust_env`` the process environment's ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY``
and ``NO_PROXY``, read when a process builds its pools.
"""

from __future__ import annotations

import ipaddress
import urllib.request
from collections.abc import Mapping
from types import MappingProxyType

from ._config import PoolConfig


def proxy_settings(config: PoolConfig) -> tuple[Mapping[str, str], tuple[str, ...]]:
    """The proxies every client of a process's pools uses, and the NO_PROXY entries; read once."""
    proxies: dict[str, str] = {}
    no_proxy: tuple[str, ...] = ()
    if config.trust_env:
        found = urllib.request.getproxies_environment()
        no_proxy = tuple(
            entry.strip().lower() for entry in found.pop("no", "").split(",") if entry.strip()
        )
        proxies.update({scheme: url for scheme, url in found.items() if url})
    proxies.update(config.proxies)
    return MappingProxyType(proxies), no_proxy


def bypasses(no_proxy: tuple[str, ...], host: str | None) -> bool:
    """Whether ``host`` matches an entry of the NO_PROXY list ``no_proxy``."""
    return bool(host) and any(_matches(entry, host or "") for entry in no_proxy)


def _matches(entry: str, host: str) -> bool:
    """Whether a NO_PROXY entry (``*``, a domain suffix, an address or a network) covers ``host``."""
    host = host.strip("[]").lower()
    if entry == "*":
        return True
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        domain = entry.lstrip(".")
        return host == domain or host.endswith("." + domain)
