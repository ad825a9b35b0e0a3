"""Single-thread microseconds per GET, each client over one keep-alive connection; printed as JSON.

    python -m benchmarks.micro URL CA_FILE CALLS

Run by ``benchmarks/wire.py`` in a process whose environment it sets (3 variables, then 300).
Clients take turns, the order rotating each round; each figure is the median of the rounds.
Also: what creating a request-scoped client costs, and the middleware per incoming request.
"""

from __future__ import annotations

import http.client
import json
import ssl
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import requests
import urllib3

import wsgi_pool
from wsgi_pool import Client, PoolConfig, PoolMiddleware
from wsgi_pool._propagation import from_environ
from wsgi_pool._stats import Counters
from wsgi_pool._worker import WorkerPools
from wsgi_pool.prometheus import Exporter

ROUNDS = 5
ENVIRON = {"HTTP_X_REQUEST_ID": "bench-1"}


def clients(url: str, ca: str) -> dict[str, Callable[[str], bytes]]:
    """Each client's GET of a URL, body read."""
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    context = ssl.create_default_context(cafile=ca)
    connection = (
        http.client.HTTPSConnection(parts.hostname or "", parts.port, context=context)
        if tls
        else http.client.HTTPConnection(parts.hostname or "", parts.port)
    )
    prefix = len(f"{parts.scheme}://{parts.netloc}")

    def http_client(target: str) -> bytes:
        connection.request("GET", target[prefix:])
        return connection.getresponse().read()

    manager = urllib3.PoolManager(ca_certs=ca)
    session = requests.Session()
    session.verify = ca
    httpx_client = httpx.Client(verify=context)
    environ_client = _EnvironClient(wsgi_pool.client(PoolConfig(ca_bundle=ca)).pools)
    # The same client over pools of their own (a distinct config): statistics not counted
    # (each upstream's counters made no-ops), and Prometheus metrics kept as well.
    uncounted = _EnvironClient(
        wsgi_pool.client(PoolConfig(ca_bundle=ca, pool_connections=11)).pools
    )
    uncounted(f"{url}/echo?id=warm")
    for stats in uncounted.pools.adapter.stats.all():
        stats.__class__ = _Uncounted
    prometheus = _EnvironClient(wsgi_pool.client(PoolConfig(ca_bundle=ca, prometheus=True)).pools)

    return {
        "persistent http.client": http_client,
        "urllib3.PoolManager": lambda target: manager.request("GET", target).data,
        "requests.Session": lambda target: session.get(target).content,
        "httpx.Client": lambda target: httpx_client.get(target).content,
        "wsgi_pool (environ client)": environ_client,
        "wsgi_pool, statistics not counted": uncounted,
        "wsgi_pool, Prometheus metrics kept": prometheus,
    }


class _Uncounted(Counters):
    """An upstream's statistics that count nothing: what counting costs is the difference."""

    __slots__ = ()

    def add(self, name: str, count: int = 1) -> None:
        return None

    def sent(self, *, reused: bool) -> None:
        return None

    def waited(self, seconds: float, *, got: bool) -> None:
        return None

    def started(self) -> None:
        return None

    def ended(
        self,
        seconds: float,
        error: BaseException | None,
        method: str = "GET",
        status: int | None = None,
    ) -> None:
        return None


class _EnvironClient:
    """What the middleware gives a handler: a new client per incoming request (here, per three
    calls), carrying the request's id."""

    def __init__(self, pools: WorkerPools) -> None:
        self.pools = pools
        self.calls = 0
        self.client = Client(pools=pools)

    def __call__(self, target: str) -> bytes:
        if self.calls % 3 == 0:
            self.client = Client(
                pools=self.pools, propagation=from_environ(ENVIRON, "X-Request-ID")
            )
        self.calls += 1
        return self.client.get(target).content


def _counter(stats: Counters) -> Callable[[], None]:
    def counted() -> None:
        stats.sent(reused=True)
        stats.ended(0.002, None)

    return counted


def per_call(get: Callable[[str], bytes], url: str, calls: int, start: int) -> float:
    began = time.perf_counter()
    for number in range(start, start + calls):
        token = str(number)
        if get(f"{url}/echo?id={token}") != token.encode():
            raise RuntimeError("an answer that is not the call's own")
    return (time.perf_counter() - began) / calls * 1e6


def main() -> None:
    url, ca, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    found = clients(url, ca)
    names = list(found)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for get in found.values():
        get(f"{url}/echo?id=warm")
    counter = 0
    for round_number in range(ROUNDS):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(per_call(found[name], url, calls, counter))
            counter += calls
    result = {name: statistics.median(values) for name, values in samples.items()}
    pools = wsgi_pool.client(PoolConfig(ca_bundle=ca)).pools
    number = 20000
    result["new request-scoped client (no call)"] = (
        min(timeit.repeat(lambda: Client(pools=pools), number=number, repeat=3)) / number * 1e6
    )

    # What one GET adds to its upstream's statistics: a request sent on a reused connection,
    # then the call's end (time, histogram bucket); the pool wait is counted only on a wait.
    for label, stats in (
        ("statistics counted per call (no call)", Counters("http://bench:80")),
        (
            "statistics and Prometheus per call (no call)",
            Counters("http://bench:80", [Exporter().sink_for("http://bench:80")]),
        ),
    ):
        result[label] = min(timeit.repeat(_counter(stats), number=number, repeat=3)) / number * 1e6

    def nothing(environ: dict[str, str], start_response: object) -> list[bytes]:
        return [b"ok"]

    wrapped = PoolMiddleware(nothing)
    bare = min(timeit.repeat(lambda: nothing(dict(ENVIRON), None), number=number, repeat=3))
    full = min(timeit.repeat(lambda: wrapped(dict(ENVIRON), None), number=number, repeat=3))  # type: ignore[arg-type]
    result["middleware per incoming request (no call)"] = (full - bare) / number * 1e6
    print(json.dumps(result))


if __name__ == "__main__":
    main()
