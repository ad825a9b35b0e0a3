"""Fast piece: requests' case-insensitive headers, whose look-ups of an absent name raise nothing.

requests' ``CaseInsensitiveDict`` answers ``name in headers`` and ``headers.get(name)``
through ``collections.abc.Mapping``, which looks the name up and catches the ``KeyError`` of
an absent one: a raised exception for every header a call asks about and does not find
(``Location`` on every response, ``Set-Cookie``, ``Content-Encoding`` ...). :class:`QuickHeaders`
is a ``CaseInsensitiveDict`` that answers both from its store directly; everything else is
requests' own. The fast path's prepared requests and responses carry it;
``tests/test_fast_whole.py`` compares its answers with requests'.
"""

from __future__ import annotations

from typing import Any, Final

from requests.structures import CaseInsensitiveDict


class QuickHeaders(CaseInsensitiveDict[Any]):
    """``CaseInsensitiveDict`` with ``in`` and ``get`` answered without raising."""

    def __contains__(self, key: object) -> bool:
        return key.lower() in self._store  # type: ignore[attr-defined]  # as requests: str keys

    def get(self, key: str, default: Any = None) -> Any:
        found = self._store.get(key.lower())
        return default if found is None else found[1]


def stored(store: dict[str, tuple[str, Any]]) -> QuickHeaders:
    """Headers holding ``store`` (``lower name: (name, value)``, what ``__setitem__`` makes),
    made without ``CaseInsensitiveDict``'s update machinery. The headers take ``store`` as
    their own: pass a fresh one.

    The store is a plain ``dict`` where requests makes an ``OrderedDict``: it keeps the same
    order, and ``CaseInsensitiveDict`` uses nothing of it that a ``dict`` lacks.
    """
    headers = QuickHeaders.__new__(QuickHeaders)
    headers._store = store  # type: ignore[assignment]  # a dict, not an OrderedDict
    return headers


STORED: Final = frozenset({CaseInsensitiveDict, QuickHeaders})
"""Header types whose ``_store`` holds each header as ``lower name: (name, value)``."""
