"""The app the memory comparison serves: requests imported, or wsgi_pool loaded and used.

``BENCH_MODE=requests``: the app imports requests and makes no call. ``BENCH_MODE=wsgi_pool``:
it is wrapped in ``PoolMiddleware`` and each request makes one GET through the worker's pools
to ``BENCH_UPSTREAM``. Either answers ``/_rss`` with its process's resident memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import requests  # noqa: F401  (the baseline: requests imported)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

MODE = os.environ.get("BENCH_MODE", "requests")
UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:8080")


def memory() -> dict[str, int]:
    """This process's resident and proportional set sizes in KiB (``/proc/self/smaps_rollup``)."""
    found: dict[str, int] = {}
    with open("/proc/self/smaps_rollup", encoding="ascii") as rollup:
        for line in rollup:
            name, _, rest = line.partition(":")
            if name in {"Rss", "Pss", "Private_Clean", "Private_Dirty"}:
                found[name.lower()] = int(rest.split()[0])
    return found


def _app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    body = b"ok"
    if environ.get("PATH_INFO") == "/_rss":
        body = json.dumps(memory()).encode()
    elif MODE == "wsgi_pool":
        from wsgi_pool import client_from  # noqa: PLC0415  (only this mode loads it)

        body = client_from(environ).get(f"{UPSTREAM}/echo?id=warm").content
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _wrapped() -> Any:
    if MODE != "wsgi_pool":
        return _app
    from wsgi_pool import PoolMiddleware  # noqa: PLC0415  (only this mode loads it)

    return PoolMiddleware(_app)


app = _wrapped()
