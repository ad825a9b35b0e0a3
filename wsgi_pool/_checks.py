"""The checks a setting's value must pass, each raising :class:`ConfigError` naming it.

Used by the config's constructors when a value is set (in code, from the environment or a
framework's settings), so a bad value stops the server at start-up, never a call. Some
checks also return the value in its one canonical form (a frozenset of statuses, sorted
lower-case header names, networks as ``ipaddress`` writes them).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import urlsplit

from ._errors import ConfigError

_TOKEN: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

CREDENTIAL_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
"""Headers that never go to another origin on a redirect, whatever ``redirect_headers`` says."""


def count(name: str, value: object) -> None:
    """None, or a whole number >= 1."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected a whole number >= 1, got {value!r}")


def whole(name: str, value: object) -> None:
    """None, or a whole number >= 0."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name}: expected a whole number >= 0, got {value!r}")


def is_number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def seconds(name: str, value: object, *, zero: bool = False) -> None:
    """None, or a finite number of seconds > 0 (>= 0 with ``zero``)."""
    if value is None:
        return
    if not is_number(value) or value < 0 or (value == 0 and not zero):  # type: ignore[operator]
        bound = ">= 0" if zero else "> 0"
        raise ConfigError(f"{name}: expected a finite number of seconds {bound}, got {value!r}")


def fraction(name: str, value: object) -> None:
    """A number from 0 to 1."""
    if not is_number(value) or not 0 <= value <= 1:  # type: ignore[operator]
        raise ConfigError(f"{name}: expected a fraction from 0 to 1, got {value!r}")


def boolean(name: str, value: object) -> None:
    """None, True or False."""
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{name}: expected True or False, got {value!r}")


def ca_bundle(name: str, value: object) -> None:
    """None, or the path of a CA file or directory that exists."""
    if value is None:
        return
    if not isinstance(value, str) or not os.path.exists(value):
        raise ConfigError(f"{name}: expected the path of a CA file or directory, got {value!r}")


def path(name: str, value: object) -> None:
    """None, or a URL path starting with ``/``."""
    if value is not None and (not isinstance(value, str) or not value.startswith("/")):
        raise ConfigError(f"{name}: expected a path starting with '/', got {value!r}")


def statuses(value: object) -> frozenset[int]:
    """HTTP status codes."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigError(f"retry_statuses: expected status codes, got {value!r}")
    found = frozenset(value)
    for status in found:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ConfigError(f"retry_statuses: {status!r} is not an HTTP status code")
    return found


def headers(setting: str, names: object) -> tuple[str, ...]:
    """Header names (RFC 9110 tokens)."""
    if isinstance(names, str | bytes) or not isinstance(names, Iterable):
        raise ConfigError(f"{setting}: expected header names, got {names!r}")
    found = tuple(names)
    for name in found:
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ConfigError(f"{setting}: {name!r} is not a header name")
    return found


def redirect_headers(names: object) -> tuple[str, ...]:
    """Header names that may cross origins on a redirect: never a credential; sorted, lower case."""
    found = {name.lower() for name in headers("redirect_headers", names)}
    credentials = sorted(found & CREDENTIAL_HEADERS)
    if credentials:
        raise ConfigError(
            f"redirect_headers: {', '.join(credentials)} never go to another origin; "
            f"remove them from the list"
        )
    return tuple(sorted(found))


def networks(setting: str, value: object) -> tuple[str, ...]:
    """Addresses or networks (CIDR), as ``ipaddress`` writes them."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigError(f"{setting}: expected networks like '10.0.0.0/8', got {value!r}")
    checked = []
    for network in value:
        try:
            checked.append(str(ipaddress.ip_network(network, strict=False)))
        except (TypeError, ValueError):
            raise ConfigError(
                f"{setting}: {network!r} is not an address or network like '10.0.0.0/8'"
            ) from None
    return tuple(checked)


def proxies(value: object) -> dict[str, str]:
    """A requests proxies mapping: scheme (or ``scheme://host``) to a proxy URL."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"proxies: expected a mapping of scheme to proxy URL, got {value!r}")
    checked: dict[str, str] = {}
    for key, url in value.items():
        if not isinstance(key, str) or not isinstance(url, str):
            raise ConfigError(f"proxies: expected text keys and URLs, got {key!r}: {url!r}")
        parts = urlsplit(url)
        if not parts.scheme or not parts.hostname:
            raise ConfigError(f"proxies[{key!r}]: {url!r} is not a proxy URL like http://host:port")
        checked[key] = url
    return checked
