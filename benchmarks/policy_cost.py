"""What the trust-boundary policies cost per call, side by side in one run.

    .venv/bin/python benchmarks/policy_cost.py [--calls 3000] [--rounds 4]

Single thread, keep-alive GETs to a local upstream, through four clients in turn (the order
rotates every round, so drift on a shared machine hits each alike):

- ``default``: no propagation, no egress policy;
- ``propagate``: a request-scoped client sending the request id and trace context;
- ``egress``: ``egress_deny_private`` with an ``egress_allow`` entry for the upstream;
- ``egress-new-conn``: the same policy, every call on a new connection (``Connection:
  close``), so each pays the name lookup and the address check.

Prints the median microseconds per call of each and its ratio to ``default`` (to
``default-new-conn`` for the last), and the middleware's cost of reading and validating the
incoming id and trace context. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import wsgi_pool
from wsgi_pool import Client, PoolConfig, UpstreamSettings
from wsgi_pool._propagation import Propagation, from_environ
from wsgi_pool.testing import Upstream

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def per_call(call: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


def bind(get: Callable[..., object], url: str, *, new_connection: bool) -> Callable[[], object]:
    """A call of ``get(url)``, asking for a new connection each time if ``new_connection``."""
    headers = {"Connection": "close"} if new_connection else {}
    return lambda: get(url, headers=headers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=4)
    options = parser.parse_args()
    with Upstream() as upstream:
        url = f"{upstream.url}/x"
        egress = PoolConfig(egress_deny_private=True, egress_allow=("127.0.0.1",))
        propagate = PoolConfig(upstreams={upstream.url: UpstreamSettings(propagate=True)})
        clients: dict[str, Callable[..., object]] = {
            "default": wsgi_pool.client().get,
            "propagate": Client(
                propagate, propagation=Propagation("req-1", TRACEPARENT, "a=b")
            ).get,
            "egress": wsgi_pool.client(egress).get,
            "default-new-conn": wsgi_pool.client(PoolConfig(read_timeout=14.0)).get,
            "egress-new-conn": wsgi_pool.client(egress).get,
        }
        calls = {
            name: bind(get, url, new_connection=name.endswith("new-conn"))
            for name, get in clients.items()
        }
        for call in calls.values():  # warm up: pools, caches
            call()
        samples: dict[str, list[float]] = {name: [] for name in calls}
        names = list(calls)
        for round_number in range(options.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(per_call(calls[name], options.calls))
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{'client':<18} {'us/call':>9} {'ratio':>7}   rounds")
    for name, value in median.items():
        base = median["default-new-conn" if name.endswith("new-conn") else "default"]
        rounds = " ".join(f"{v:.0f}" for v in samples[name])
        print(f"{name:<18} {value:>9.1f} {value / base:>7.3f}   {rounds}")
    environ = {
        "HTTP_X_REQUEST_ID": "req-42",
        "HTTP_TRACEPARENT": TRACEPARENT,
        "HTTP_TRACESTATE": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
    }
    valid = min(timeit.repeat(lambda: from_environ(environ, "X-Request-ID"), number=20000)) / 20000
    fresh = min(timeit.repeat(lambda: from_environ({}, "X-Request-ID"), number=20000)) / 20000
    print(
        f"middleware: validate an incoming id + trace context {valid * 1e6:.1f} us, "
        f"make fresh ones {fresh * 1e6:.1f} us per request"
    )


if __name__ == "__main__":
    main()
