"""A plain WSGI app whose handler calls an upstream through the request-scoped client.

    UPSTREAM_URL=http://127.0.0.1:8081 gunicorn -c deploy/gunicorn.conf.py examples.plain_wsgi:app

``GET /?tag=abc`` makes the calls through wsgi_pool; ``GET /naive?tag=abc`` makes the same
calls with ``requests.get``, for comparison (the demo runs both). ``GET /healthz`` answers
``ok`` without calling anything (the probes in ``deploy/kubernetes.yaml``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from examples.upstream_calls import call_upstream, naive_get
from wsgi_pool import PoolMiddleware, client_from

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def view(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    tag = parse_qs(environ.get("QUERY_STRING", "")).get("tag", ["-"])[0]
    path = environ.get("PATH_INFO")
    if path == "/healthz":  # alive and serving: no upstream is asked
        body = b"ok"
    elif path == "/naive":
        body = call_upstream(naive_get, tag)
    else:
        body = call_upstream(client_from(environ).get, tag)
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


app = PoolMiddleware(view)
