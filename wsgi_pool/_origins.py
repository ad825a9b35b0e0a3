"""How upstreams are named: ``scheme://host:port``, default ports filled in, lower case.

One name per upstream is what settings (``upstreams``), statistics, metrics labels, retry
budgets and error messages key on. Three ways lead to it and all must agree (a test checks
them against each other): an origin written in the config (:func:`normalize_origin`), a URL
on a call's path (:func:`origin_of`, cached, looking only at the part before the path), and
the host a urllib3 pool connects to (:func:`pool_origin`).

This module imports nothing from requests or urllib3: the config is validated in the
gunicorn master with it.
"""

from __future__ import annotations

import functools
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

DEFAULT_PORTS: Final = MappingProxyType({"http": 80, "https": 443})


def normalize_origin(text: str) -> str:
    """``"HTTPS://Api.Internal"`` -> ``"https://api.internal:443"``; ValueError if not an origin."""
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if scheme not in DEFAULT_PORTS or not parts.hostname or port == -1:
        raise ValueError(f"{text!r} is not an origin like https://host[:port]")
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r} is not an origin like https://host[:port]: remove the path")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or DEFAULT_PORTS[scheme]}"


def authority_of(url: str) -> tuple[str, str]:
    """The scheme and authority of ``url``, as written: ``("https", "user@host:8443")``.

    The scheme is all before the first ``://`` (all of ``url`` if there is none, with no
    authority), the authority all after it up to a ``/``, ``?`` or ``#``.
    """
    scheme, found, rest = url.partition("://")
    if not found:
        return url, ""
    cut = rest.find("/")
    authority = rest if cut < 0 else rest[:cut]
    if "?" in authority or "#" in authority:  # rare: a query or fragment right after it
        authority = authority.partition("?")[0].partition("#")[0]
    return scheme, authority


_last_origin: tuple[str | None, str] = (None, "")
"""The last URL :func:`origin_of` named, and its origin (one call asks two or three times)."""


def origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url``, default ports filled in: how a call's upstream is named.

    On every call's path: only the part before the path is looked at, and its naming is cached.
    """
    global _last_origin  # one tuple, replaced whole: safe across threads
    last = _last_origin
    if url == last[0]:
        return last[1]
    scheme, authority = authority_of(url)
    origin = _origin(scheme, authority.rpartition("@")[2])
    _last_origin = (url, origin)
    return origin


def pool_origin(scheme: str, host: str | None, port: int | None) -> str:
    """The upstream a urllib3 pool connects to, named as :func:`origin_of` names it."""
    host = host or ""
    authority = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return _origin(scheme, f"{authority}:{port}" if port is not None else authority)


@functools.lru_cache(maxsize=1024)
def _origin(scheme: str, authority: str) -> str:
    try:
        return normalize_origin(f"{scheme}://{authority}")
    except ValueError:  # not a URL requests will send: it says so itself, naming the whole URL
        return f"{scheme.lower()}://{authority.lower()}"
