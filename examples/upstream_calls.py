"""What every example handler does: call one upstream a few times and report the answers.

``UPSTREAM_URL`` names the upstream (default http://127.0.0.1:8081) and ``UPSTREAM_CALLS``
how many calls one incoming request makes (default 3). Each call carries the incoming
request's ``tag`` and this worker's process id, so the caller can check that every answer
belongs to its own request and the upstream can see which process used which connection.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import requests

UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8081")
UPSTREAM_CALLS = int(os.environ.get("UPSTREAM_CALLS", "3"))

Get = Callable[..., requests.Response]


def call_upstream(get: Get, tag: str, path: str = "/items") -> bytes:
    """Make ``UPSTREAM_CALLS`` GETs with ``get`` and return a JSON summary of the answers."""
    headers = {"X-Tag": tag, "X-Caller-Pid": str(os.getpid())}
    answers: list[Any] = []
    for number in range(UPSTREAM_CALLS):
        response = get(f"{UPSTREAM_URL}{path}/{number}", headers=headers)
        response.raise_for_status()
        answers.append(response.json()["tag"])
    return json.dumps({"pid": os.getpid(), "tag": tag, "answers": answers}).encode()


def naive_get(url: str, **kwargs: Any) -> requests.Response:
    """The pattern wsgi_pool replaces: a new connection (and handshake) for every call."""
    return requests.get(url, timeout=(5, 15), **kwargs)
