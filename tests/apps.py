"""WSGI apps the end-to-end tests serve with real gunicorn."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

import requests

import wsgi_pool
from examples.upstream_calls import UPSTREAM_URL, call_upstream
from wsgi_pool import PoolMiddleware, client_from

if os.environ.get("WARM_IN_MASTER"):
    # Runs at import: in the gunicorn master under --preload, before any worker is forked.
    wsgi_pool.client().get(f"{UPSTREAM_URL}/master", headers={"X-Caller-Pid": str(os.getpid())})

# The anti-pattern the product replaces: one module-level Session with requests' default pool of 10.
shared_session = requests.Session()


def view(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    tag = parse_qs(environ.get("QUERY_STRING", "")).get("tag", ["-"])[0]
    path = environ.get("PATH_INFO")
    if path == "/slow":
        body = client_from(environ).get(f"{UPSTREAM_URL}/slow?delay=1").content
    elif path == "/session-slow":
        body = shared_session.get(f"{UPSTREAM_URL}/slow?delay=1", timeout=10).content
    else:
        body = call_upstream(client_from(environ).get, tag)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


app = PoolMiddleware(view)
