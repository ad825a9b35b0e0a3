"""WSGI apps the end-to-end tests serve with real gunicorn."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

import requests

import wsgi_pool
from examples.upstream_calls import UPSTREAM_URL, call_upstream
from wsgi_pool import PoolMiddleware, client_from

# An SDK's own session, made at import (in the gunicorn master under --preload), with
# wsgi_pool's adapter mounted as the docs show.
sdk_session = requests.Session()
sdk_session.mount("http://", wsgi_pool.adapter())

if os.environ.get("PATCH_REQUESTS"):
    # The app's start-up adopts wsgi_pool for every requests.get in it (in the master, under
    # --preload): no call site changes.
    wsgi_pool.patch_requests()

if os.environ.get("WARM_IN_MASTER"):
    # Runs at import: in the gunicorn master under --preload, before any worker is forked.
    wsgi_pool.client().get(f"{UPSTREAM_URL}/master", headers={"X-Caller-Pid": str(os.getpid())})
    sdk_session.get(f"{UPSTREAM_URL}/master-sdk", headers={"X-Caller-Pid": str(os.getpid())})

# The anti-pattern the product replaces: one module-level Session with requests' default pool of 10.
shared_session = requests.Session()


def view(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    tag = parse_qs(environ.get("QUERY_STRING", "")).get("tag", ["-"])[0]
    path = environ.get("PATH_INFO")
    if path == "/slow":
        body = client_from(environ).get(f"{UPSTREAM_URL}/slow?delay=1").content
    elif path == "/call":
        status, body = call_and_map_errors(environ)
        start_response(status, [("Content-Type", "text/plain")])
        return [body]
    elif path == "/_pools":  # how this process's pools were sized
        sizing = client_from(environ).pools.sizing
        body = json.dumps({"pid": os.getpid(), "pool_maxsize": sizing.pool_maxsize}).encode()
    elif path == "/_stats":  # statistics and repr of this process's pools (gevent included)
        pools = client_from(environ).pools
        found = {name: counts.as_dict() for name, counts in pools.stats().items()}
        body = json.dumps({"repr": repr(pools), "stats": found}).encode()
    elif path == "/fleet":  # one call the upstream holds for 50 ms: concurrent calls overlap
        body = client_from(environ).get(f"{UPSTREAM_URL}/fleet?delay=0.05").content
    elif path == "/seen":
        body = seen_by_upstream(environ)
    elif path == "/sdk":  # a call through the SDK's session: what the upstream saw
        pid = str(os.getpid())
        body = sdk_session.get(f"{UPSTREAM_URL}/sdk", headers={"X-Caller-Pid": pid}).content
    elif path == "/plain-requests":  # the module-level function apps call everywhere
        pid = str(os.getpid())
        body = requests.get(
            f"{UPSTREAM_URL}/plain", headers={"X-Caller-Pid": pid}, timeout=10
        ).content
    elif path == "/session-slow":
        body = shared_session.get(f"{UPSTREAM_URL}/slow?delay=1", timeout=10).content
    else:
        body = call_upstream(client_from(environ).get, tag)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def call_and_map_errors(environ: dict[str, Any]) -> tuple[str, bytes]:
    """GET the ``url`` query parameter; an upstream timeout is a 504, another failure a 502."""
    target = parse_qs(environ.get("QUERY_STRING", ""))["url"][0]
    try:
        response = client_from(environ).get(target)
    except wsgi_pool.UpstreamTimeout as exc:
        return "504 Gateway Timeout", f"{type(exc).__name__}: {exc}".encode()
    except wsgi_pool.UpstreamError as exc:
        return "502 Bad Gateway", f"{type(exc).__name__}: {exc}".encode()
    return f"{response.status_code} Upstream", response.content


def seen_by_upstream(environ: dict[str, Any]) -> bytes:
    """GET the ``url`` query parameter; what the app and that upstream saw, as JSON."""
    target = parse_qs(environ.get("QUERY_STRING", ""))["url"][0]
    answer = client_from(environ).get(target).json()
    return json.dumps(
        {
            "environ_proxy": environ.get("HTTP_PROXY"),
            "request_id": environ.get("wsgi_pool.request_id"),
            "upstream_path": answer["path"],
            "upstream_headers": answer["headers"],
        }
    ).encode()


app = PoolMiddleware(view)
