"""Settings from environment variables: ``WSGI_POOL_<NAME>`` for every config field ``name``.

Each field names its own parser (the functions below) next to its documentation in
``_config``; this module turns the text of each variable into a value, and refuses a
variable it does not know or a value it cannot read with a :class:`ConfigError` that names
the variable, the value and the fix (the closest known name, for a misspelled one). The
variables Kubernetes sets for a Service named ``wsgi-pool`` are not settings, and are
skipped. Nothing here knows the fields themselves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from ._errors import ConfigError

ENV_PREFIX: Final = "WSGI_POOL_"
"""Every setting ``name`` is read from the environment variable ``WSGI_POOL_<NAME>``."""

SERVICE_LINK: Final = re.compile(
    r"SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?"
)
"""What follows the prefix in the variables Kubernetes gives every pod for a Service named
``wsgi-pool`` (``WSGI_POOL_SERVICE_HOST``, ``WSGI_POOL_PORT_8000_TCP``...): not settings, ignored."""

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})

Parser = Callable[[str], Any]


def parse_int(text: str) -> int:
    return int(text.strip())


def parse_float(text: str) -> float:
    return float(text.strip())


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")


def parse_str(text: str) -> str:
    return text.strip()


def parse_optional_str(text: str) -> str | None:
    return None if text.strip().lower() in {"", "none"} else text.strip()


def parse_optional_int(text: str) -> int | None:
    return None if text.strip().lower() == "none" else int(text.strip())


def parse_optional_float(text: str) -> float | None:
    return None if text.strip().lower() == "none" else float(text.strip())


def parse_statuses(text: str) -> frozenset[int]:
    return frozenset(int(part) for part in text.split(",") if part.strip())


def parse_names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_upstreams(text: str) -> dict[str, Any]:
    """JSON: ``{"https://search.internal": {"deadline": 2.5, "retries": 0}}``."""
    found = json.loads(text)
    if not isinstance(found, dict):
        raise ValueError("expected a JSON object of origin to settings")
    return found


def parse_proxies(text: str) -> dict[str, str]:
    """``"http=http://proxy:3128,https=http://proxy:3128"`` -> a requests proxies mapping."""
    proxies: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, url = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not key=url")
        proxies[key.strip()] = url.strip()
    return proxies


def read(environ: Mapping[str, str], parsers: Mapping[str, Parser]) -> dict[str, Any]:
    """The ``WSGI_POOL_*`` variables of ``environ``, each parsed by its field's parser.

    ``parsers`` maps each field name to its parser. An unknown variable or an unparsable
    value raises :class:`ConfigError` naming the variable and the value.
    """
    values: dict[str, Any] = {}
    for key, text in environ.items():
        if not key.startswith(ENV_PREFIX) or SERVICE_LINK.fullmatch(key[len(ENV_PREFIX) :]):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        parse = parsers.get(name)
        if parse is None:
            # The name after the prefix only: the shared prefix would make anything look close.
            import difflib  # noqa: PLC0415  (only for a misspelt variable: 170 KiB otherwise)

            close = difflib.get_close_matches(name, list(parsers), n=1, cutoff=0.8)
            if close:
                suggestion = ENV_PREFIX + close[0].upper()
                raise ConfigError(f"{key}={text!r}: unknown setting; did you mean {suggestion}?")
            names = ", ".join(ENV_PREFIX + known.upper() for known in parsers)
            raise ConfigError(f"{key}={text!r}: unknown setting (known: {names})")
        try:
            values[name] = parse(text)
        except ValueError as exc:
            raise ConfigError(f"{key}={text!r}: {exc}") from None
    return values
