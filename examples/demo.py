"""The demo: wsgi_pool at work under gunicorn, side by side with ``requests.get`` per call.

    ./dev demo                      # set up, then run with the defaults below
    ./dev demo --requests 5000 --clients 32

It starts a local upstream (it counts the TCP connections it accepts), serves
``examples/plain_wsgi.py`` under gunicorn (gthread, several workers and threads) with
``deploy/gunicorn.conf.py``, drives concurrent keep-alive load at it, and reports incoming
requests, outbound calls, upstream connections opened, reuse, latency and wrong answers:
first through the request-scoped client, then with the same load through ``requests.get``.
After the first phase it reads the middleware's Prometheus endpoint (multiprocess mode: both
workers summed) and prints wsgi_pool's metrics.
It exits non-zero if any answer was wrong or any request failed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wsgi_pool.testing import GunicornServer, Upstream

ROOT = Path(__file__).resolve().parent.parent
METRICS_PATH = "/metrics"


@dataclass
class Phase:
    """What one load phase measured."""

    name: str
    route: str
    requests: int = 0
    errors: int = 0
    wrong_answers: int = 0
    outbound_calls: int = 0
    upstream_connections: int = 0
    shared_connections: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def reuse(self) -> float:
        """The share of outbound calls that did not open a connection."""
        if not self.outbound_calls:
            return 0.0
        return max(0.0, 1 - self.upstream_connections / self.outbound_calls)

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return math.nan
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    def summary(self) -> dict[str, object]:
        figures = {k: v for k, v in asdict(self).items() if k != "latencies_ms"}
        figures.update(
            reuse=round(self.reuse, 4),
            p50_ms=round(self.percentile(0.50), 2),
            p99_ms=round(self.percentile(0.99), 2),
            requests_per_second=round(self.requests / self.seconds, 1) if self.seconds else 0.0,
        )
        return figures


def drive(server_url: str, phase: Phase, total: int, clients: int, calls: int) -> None:
    """``total`` requests from ``clients`` threads, each on one keep-alive connection."""
    host, port = server_url.removeprefix("http://").rsplit(":", 1)
    lock = threading.Lock()
    remaining = [total]

    def client() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                tag = uuid.uuid4().hex
                started = time.perf_counter()
                ok = wrong = False
                try:
                    connection.request("GET", f"{phase.route}?tag={tag}")
                    response = connection.getresponse()
                    body = response.read()
                    if response.status == 200:
                        answers = json.loads(body)["answers"]
                        ok = len(answers) == calls
                        wrong = any(answer != tag for answer in answers)
                except (OSError, http.client.HTTPException, ValueError):
                    connection.close()
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    phase.requests += 1
                    phase.latencies_ms.append(elapsed)
                    phase.errors += not ok
                    phase.wrong_answers += wrong
        finally:
            connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    progress(phase, total, threads, started)
    phase.seconds = time.perf_counter() - started


def progress(phase: Phase, total: int, threads: list[threading.Thread], started: float) -> None:
    """Show progress until every load thread is done: one updating line on a terminal."""
    tty = sys.stderr.isatty()
    last_line = 0.0
    while any(thread.is_alive() for thread in threads):
        time.sleep(0.2)
        now = time.perf_counter()
        if tty or now - last_line >= 2:
            last_line = now
            rate = phase.requests / (now - started)
            line = f"  {phase.name:<24} {phase.requests:>6}/{total} requests  {rate:7.0f} req/s  {phase.errors} errors"
            print(
                ("\r" if tty else "") + line, end="" if tty else "\n", file=sys.stderr, flush=True
            )
    for thread in threads:
        thread.join()
    if tty:
        print(file=sys.stderr)


def run_phase(
    name: str, route: str, server: GunicornServer, upstream: Upstream, args: argparse.Namespace
) -> Phase:
    phase = Phase(name=name, route=route)
    drive(
        server.url, phase, args.clients, args.clients, args.calls
    )  # warm-up: one request per client
    upstream.reset()
    phase = Phase(name=name, route=route)
    drive(server.url, phase, args.requests, args.clients, args.calls)
    stats = upstream.stats()
    phase.outbound_calls = stats.requests_served
    phase.upstream_connections = stats.connections_opened
    phase.shared_connections = len(upstream.shared_connections())
    return phase


def scrape(server: GunicornServer) -> list[str]:
    """The wsgi_pool lines of the Prometheus exposition the middleware serves (both workers
    summed), histogram buckets left out."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        connection.request("GET", METRICS_PATH)
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    return sorted(
        line
        for line in text.splitlines()
        if line.startswith(("wsgi_pool_", "http_client_")) and "_bucket{" not in line
    )


def scrape_settled(server: GunicornServer, within: float = 5.0) -> list[str]:
    """The metrics once every worker's gauges show the load over (no connection in use): each
    worker refreshes its own once a second, so a scrape right after the load can be behind."""
    deadline = time.monotonic() + within
    while True:
        lines = scrape(server)
        in_use = [line for line in lines if 'http_connection_state="active"' in line]
        if all(line.endswith(" 0.0") for line in in_use) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def report(
    phases: list[Phase], args: argparse.Namespace, sizing: list[str], metrics: list[str]
) -> str:
    pooled, naive = phases
    rows: list[tuple[str, str, str]] = [
        ("incoming requests", f"{pooled.requests}", f"{naive.requests}"),
        ("outbound calls", f"{pooled.outbound_calls}", f"{naive.outbound_calls}"),
        (
            "upstream TCP connections opened",
            f"{pooled.upstream_connections}",
            f"{naive.upstream_connections}",
        ),
        ("connection reuse", f"{pooled.reuse:.1%}", f"{naive.reuse:.1%}"),
        ("latency p50", f"{pooled.percentile(0.5):.1f} ms", f"{naive.percentile(0.5):.1f} ms"),
        ("latency p99", f"{pooled.percentile(0.99):.1f} ms", f"{naive.percentile(0.99):.1f} ms"),
        (
            "throughput",
            f"{pooled.summary()['requests_per_second']} req/s",
            f"{naive.summary()['requests_per_second']} req/s",
        ),
        ("answers for another request", f"{pooled.wrong_answers}", f"{naive.wrong_answers}"),
        ("failed requests", f"{pooled.errors}", f"{naive.errors}"),
        (
            "connections used by two processes",
            f"{pooled.shared_connections}",
            f"{naive.shared_connections}",
        ),
    ]
    width = max(len(label) for label, _, _ in rows)
    lines = [
        "",
        f"wsgi_pool demo: gunicorn {args.worker_class}, {args.workers} workers x {args.threads} threads, "
        f"{args.calls} upstream calls per request, {args.clients} concurrent clients",
        "",
        f"{'':<{width}}  {'wsgi_pool':>16}  {'requests.get per call':>22}",
        *(f"{label:<{width}}  {a:>16}  {b:>22}" for label, a, b in rows),
        "",
        "each worker's sizing decision, from the gunicorn log:",
        *(f"  {line}" for line in sizing),
        "",
        f"Prometheus, GET {METRICS_PATH} after the wsgi_pool phase (all workers, warm-up "
        f"included; histogram buckets left out):",
        *(f"  {line}" for line in metrics),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=3000, help="incoming requests per phase (3000)"
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent load connections (16)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (8)")
    parser.add_argument(
        "--calls", type=int, default=3, help="upstream calls per incoming request (3)"
    )
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class (gthread)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    with Upstream() as upstream, tempfile.TemporaryDirectory() as metrics_dir:
        env = {
            "UPSTREAM_URL": upstream.url,
            "UPSTREAM_CALLS": str(args.calls),
            "WSGI_POOL_METRICS_PATH": METRICS_PATH,
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        }
        flags = [
            "-c",
            str(ROOT / "deploy" / "gunicorn.conf.py"),
            "-k",
            args.worker_class,
            "-w",
            str(args.workers),
            "--threads",
            str(args.threads),
        ]
        server = GunicornServer("examples.plain_wsgi:app", flags, env=env, cwd=str(ROOT))
        with server:
            print(
                f"upstream {upstream.url}; gunicorn {server.url} serving examples/plain_wsgi.py",
                file=sys.stderr,
            )
            phases = [run_phase("wsgi_pool", "/", server, upstream, args)]
            metrics = scrape_settled(server)
            phases.append(run_phase("requests.get per call", "/naive", server, upstream, args))
            server.stop()
            sizing = [
                line.split("wsgi_pool: ", 1)[1]
                for line in server.log().splitlines()
                if "wsgi_pool: pools for pid" in line
            ]
    print(report(phases, args, sizing, metrics))
    if args.json:
        figures = {"phases": [p.summary() for p in phases], "sizing": sizing, "metrics": metrics}
        args.json.write_text(json.dumps(figures, indent=2))
    failed = any(p.errors or p.wrong_answers or p.shared_connections for p in phases)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
