"""The soak's app: the plain example, plus ``/_pools``, what this worker holds right now."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from examples.plain_wsgi import view
from wsgi_pool import PoolMiddleware, client_from

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def worker_state(environ: WSGIEnvironment) -> dict[str, object]:
    """This worker's pid, open descriptors, resident memory and pool counts."""
    rss_kb = 0
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    pools = client_from(environ).pools
    return {
        "pid": os.getpid(),
        "descriptors": len(os.listdir("/proc/self/fd")),
        "rss_kb": rss_kb,
        "upstreams": {name: found.as_dict() for name, found in pools.stats().items()},
        "deadlines_pending": pools.watchdog.pending,
    }


def soak_view(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/_pools":
        body = json.dumps(worker_state(environ)).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    return view(environ, start_response)


app = PoolMiddleware(soak_view)
