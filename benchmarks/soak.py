"""The soak: a million outbound calls through gunicorn, workers recycling, then a health report.

    ./dev soak                       # 1,000,000 calls: 100,000 requests x 10 calls
    ./dev soak --calls 50000         # a short one

A local upstream, gunicorn (gthread, 2 workers x 4 threads, ``--max-requests`` so workers are
replaced all along) serving ``benchmarks/soak_app.py`` with ``deploy/gunicorn.conf.py``, and
keep-alive clients checking every answer. Every few seconds it samples one worker's
descriptors, memory and pool counts. At the end: calls, errors, wrong answers, workers seen,
upstream connections opened, and whether anything was left open after gunicorn stopped.
Not part of the test suite; exits non-zero on any error, wrong answer or leftover connection.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.demo import Phase, drive
from wsgi_pool.testing import GunicornServer, Upstream

ROOT = Path(__file__).resolve().parent.parent


def sample(url: str) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", "/_pools")
        found: dict[str, Any] = json.loads(connection.getresponse().read())
        return found
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1_000_000, help="outbound calls in all")
    parser.add_argument("--calls-per-request", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--max-requests", type=int, default=2000)
    args = parser.parse_args(argv)
    requests_total = args.calls // args.calls_per_request
    samples: list[dict[str, Any]] = []
    own_descriptors = len(os.listdir("/proc/self/fd"))
    with Upstream() as upstream:
        env = {"UPSTREAM_URL": upstream.url, "UPSTREAM_CALLS": str(args.calls_per_request)}
        flags = [
            "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "-k", "gthread",
            "-w", str(args.workers), "--threads", str(args.threads),
            "--max-requests", str(args.max_requests), "--max-requests-jitter", str(args.max_requests // 10),
        ]  # fmt: skip
        with GunicornServer("benchmarks.soak_app:app", flags, env=env, cwd=str(ROOT)) as server:
            done = threading.Event()

            def sampler() -> None:
                while not done.wait(5):
                    try:
                        samples.append(sample(server.url))
                    except (OSError, http.client.HTTPException, ValueError):
                        continue  # a worker recycling under the sample: try again later

            watcher = threading.Thread(target=sampler, daemon=True)
            watcher.start()
            phase = Phase(name="soak", route="/")
            drive(
                server.url,
                phase,
                total=requests_total,
                clients=args.clients,
                calls=args.calls_per_request,
            )
            done.set()
            watcher.join()
            last = sample(server.url)
            code = server.stop()
        log = server.log()
        stats = upstream.stats()
        left_open = upstream_open_after(upstream)
    workers = len({line for line in log.splitlines() if "wsgi_pool: pools for pid" in line})
    report = {
        "incoming_requests": phase.requests,
        "outbound_calls": phase.requests * args.calls_per_request,
        "errors": phase.errors,
        "wrong_answers": phase.wrong_answers,
        "seconds": round(phase.seconds, 1),
        "calls_per_second": round(phase.requests * args.calls_per_request / phase.seconds, 1),
        "p50_ms": round(phase.percentile(0.5), 2),
        "p99_ms": round(phase.percentile(0.99), 2),
        "workers_started": workers,
        "upstream_connections_opened": stats.connections_opened,
        "upstream_requests_served": stats.requests_served,
        "upstream_connections_open_after_stop": left_open,
        "gunicorn_exit_code": code,
        "worker_descriptors_first_last": [
            samples[0]["descriptors"] if samples else None,
            last["descriptors"],
        ],
        "worker_rss_kb_first_last": [samples[0]["rss_kb"] if samples else None, last["rss_kb"]],
        "worker_rss_kb_max": max([s["rss_kb"] for s in samples] + [last["rss_kb"]]),
        "worker_descriptors_max": max([s["descriptors"] for s in samples] + [last["descriptors"]]),
        "last_worker_pools": last["upstreams"],
        "last_worker_deadlines_pending": last["deadlines_pending"],
        "soak_process_descriptors_before_after": [
            own_descriptors,
            len(os.listdir("/proc/self/fd")),
        ],
    }
    print(json.dumps(report, indent=2))
    failed = phase.errors or phase.wrong_answers or left_open or code != 0
    return 1 if failed else 0


def upstream_open_after(upstream: Upstream, within: float = 10.0) -> int:
    """Connections still open at the upstream once gunicorn is gone (0 when every pool was closed)."""
    end = time.monotonic() + within
    while upstream.stats().open_connections and time.monotonic() < end:
        time.sleep(0.05)
    return upstream.stats().open_connections


if __name__ == "__main__":
    sys.exit(main())
