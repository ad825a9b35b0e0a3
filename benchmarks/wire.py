"""The wire benchmark: how each way of calling an upstream from a gunicorn app performs, side by side.

    ./dev bench                      # everything, two runs (about 10 minutes)
    ./dev bench --seconds 3 --runs 1 # a quicker look

One nginx on 127.0.0.1 is the upstream, over http and https (a certificate from a local CA).
For each pattern, gunicorn (gthread, 2 workers x 8 threads, ``--reuse-port``) serves
``benchmarks/wire_app.py``: every incoming request makes three GETs, each asking nginx to echo
a token unique to the call. wrk drives it over 16 keep-alive connections: a warm-up, then the
measured run. Per cell:

- req/s, and its ratio to persistent ``http.client`` connections (one per thread: the floor
  for a Python client), within the same run and scheme;
- wrk's p50 and p99 latency, and non-2xx answers;
- upstream connections opened during the measured run (nginx ``stub_status`` accepts);
- urllib3's "Connection pool is full" warnings during it;
- worker CPU per request (both workers' CPU time over the requests they served);
- answers that were not the call's own token (must be 0);
- the split of requests between the two workers (a split like 16/0 halves req/s: the run
  is marked, and ``--reuse-port`` exists to prevent it).

Then: wsgi_pool at 8, 16 and 32 threads (connections opened in steady state, pool-full
warnings), the middleware's cost on an app that makes no call, a single-thread per-call micro
benchmark with 3 and with 300 environment variables, and the memory of a worker. The order
of patterns alternates between runs; compare ratios within a run. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.nginx import Nginx  # noqa: E402  (after the path is set)
from wsgi_pool.testing import GunicornServer  # noqa: E402

PATTERNS: dict[str, str] = {
    "requests_get": "`requests.get` per call",
    "session_per_request": "one Session per incoming request",
    "thread_local_session": "thread-local Session",
    "module_session": "module-level Session (default)",
    "module_session_tuned": "module-level Session (pool_maxsize=threads)",
    "httpx_client": "`httpx.Client`",
    "urllib3_pool": "`urllib3.PoolManager`",
    "wsgi_pool": "**wsgi_pool** (environ client)",
    "wsgi_pool_cached": "wsgi_pool, HTTP cache hits (one URL, `max-age=600`)",
    "http_client": "persistent `http.client` (floor)",
}
FLOOR = "http_client"
WORKERS = 2


@dataclass
class Cell:
    """One pattern over one scheme, measured once."""

    pattern: str
    scheme: str
    threads: int
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    non_2xx: int = 0
    socket_errors: int = 0
    opened: int = 0
    pool_full: int = 0
    cpu_us: float = 0.0
    mismatches: int = 0
    split: list[int] = field(default_factory=list)
    ratio: float = 0.0

    @property
    def even(self) -> bool:
        """Whether each worker served at least a third of the requests."""
        total = sum(self.split)
        return total > 0 and min(self.split) >= total / (3 * len(self.split))


# -- servers -------------------------------------------------------------------------------------


@contextmanager
def upstream(directory: str) -> Iterator[tuple[Nginx, str]]:
    """nginx over http and https, and the CA file that verifies its certificate."""
    import trustme  # noqa: PLC0415  (a dev dependency)

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_file = (str(Path(directory) / n) for n in ("chain.pem", "key.pem", "ca.pem"))
    cert.private_key_pem.write_to_path(key)
    Path(chain).write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(ca_file)
    with Nginx("300s", tls=(chain, key)) as nginx:
        yield nginx, ca_file


def _get(url: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        return connection.getresponse().read()
    finally:
        connection.close()


def worker_stats(url: str, workers: int) -> dict[int, dict[str, Any]]:
    """Each worker's counts: asked over new connections until every worker has answered."""
    found: dict[int, dict[str, Any]] = {}
    end = time.monotonic() + 30
    while len(found) < workers:
        if time.monotonic() > end:
            raise RuntimeError(f"only workers {sorted(found)} answered /_stats")
        stats = json.loads(_get(url, "/_stats"))
        found[stats["pid"]] = stats
    return found


@contextmanager
def gunicorn(
    app: str,
    env: dict[str, str],
    *,
    threads: int,
    workers: int = WORKERS,
    flags: Sequence[str] = (),
) -> Iterator[GunicornServer]:
    """gunicorn (gthread, ``--reuse-port``) with deploy/gunicorn.conf.py, every worker answering."""
    server = GunicornServer(
        app,
        ["-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "--reuse-port", *flags],
        env={
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_THREADS": str(threads),
            "GUNICORN_WORKER_CLASS": "gthread",
            "BENCH_THREADS": str(threads),
            **env,
        },
        cwd=str(ROOT),
    )
    with server:
        worker_stats(server.url, workers)  # every worker listens before the load starts
        yield server


# -- load ----------------------------------------------------------------------------------------


def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, connections: int, seconds: float, *, measured: bool) -> dict[str, float]:
    """wrk's req/s, p50/p99 (ms), non-2xx answers and socket errors for one run against ``url``."""
    duration = f"-d{max(round(seconds), 1)}s"  # wrk takes whole seconds
    command = ["wrk", "-t1", f"-c{connections}", duration, "--latency", "--timeout", "10s"]
    if measured:
        command += ["-H", "X-Bench: measure"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    found = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": 0.0,
        "socket_errors": 0.0,
    }
    for percent, key in (("50", "p50_ms"), ("99", "p99_ms")):
        found[key] = _milliseconds(re.search(rf"\s{percent}%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        found["non_2xx"] = float(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        found["socket_errors"] = float(sum(int(n) for n in match.groups()))
    return found


def measure(
    nginx: Nginx,
    ca: str,
    pattern: str,
    scheme: str,
    *,
    threads: int,
    seconds: float,
    path: str = "/",
) -> Cell:
    """One cell: serve ``pattern``, warm it up, then measure it under wrk."""
    cell = Cell(pattern, scheme, threads)
    target = nginx.tls_url if scheme == "https" else nginx.url
    env = {
        "BENCH_PATTERN": pattern,
        "BENCH_UPSTREAM": target,
        "BENCH_CA": ca,
        "WSGI_POOL_CA_BUNDLE": ca,
    }
    if pattern == "wsgi_pool_cached":
        env["WSGI_POOL_HTTP_CACHE_BYTES"] = str(1 << 20)
    connections = WORKERS * threads
    with gunicorn("benchmarks.wire_app:app", env, threads=threads) as server:
        wrk(server.url + path, connections, max(seconds / 3, 1.0), measured=False)
        before, accepted = worker_stats(server.url, WORKERS), nginx.accepted()
        result = wrk(server.url + path, connections, seconds, measured=True)
        after, cell.opened = worker_stats(server.url, WORKERS), nginx.accepted() - accepted
    cell.rps, cell.p50_ms, cell.p99_ms = result["rps"], result["p50_ms"], result["p99_ms"]
    cell.non_2xx, cell.socket_errors = int(result["non_2xx"]), int(result["socket_errors"])
    served = sum(after[pid]["measured"] - before[pid]["measured"] for pid in after)
    cpu = sum(after[pid]["cpu"] - before[pid]["cpu"] for pid in after)
    cell.cpu_us = cpu / served * 1e6 if served else 0.0
    cell.split = [after[pid]["measured"] - before[pid]["measured"] for pid in sorted(after)]
    cell.pool_full = sum(after[pid]["pool_full"] - before[pid]["pool_full"] for pid in after)
    cell.mismatches = sum(after[pid]["mismatches"] for pid in after)
    return cell


# -- reports -------------------------------------------------------------------------------------


def table(cells: list[Cell], label: Callable[[Cell], str]) -> str:
    header = (
        "| pattern | req/s | ratio | p50 ms | p99 ms | upstream conns opened | pool full "
        "| CPU us/req | wrong answers | non-2xx | split |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    rows = [
        f"| {label(c)} | {c.rps:,.0f} | {f'{c.ratio:.2f}' if c.ratio else '-'} | {c.p50_ms:.1f} | {c.p99_ms:.1f} "
        f"| {c.opened:,} | {c.pool_full:,} | {c.cpu_us:,.0f} | {c.mismatches} "
        f"| {c.non_2xx + c.socket_errors} | {'/'.join(map(str, c.split))}"
        f"{'' if c.even else ' (uneven)'} |"
        for c in cells
    ]
    return "\n".join([header, *rows])


def summary(runs: list[list[Cell]]) -> str:
    """Ratio to the floor per pattern and scheme, each run side by side."""
    lines = [
        "| pattern | http | https |",
        "|---|---|---|",
    ]
    for pattern, name in PATTERNS.items():
        per_scheme = []
        for scheme in ("http", "https"):
            ratios = [
                f"{c.ratio:.2f}"
                for run in runs
                for c in run
                if c.pattern == pattern and c.scheme == scheme
            ]
            per_scheme.append(" / ".join(ratios) or "-")
        lines.append(f"| {name} | {per_scheme[0]} | {per_scheme[1]} |")
    return "\n".join(lines)


def patterns_run(
    nginx: Nginx, ca: str, run: int, *, seconds: float, threads: int, chosen: Sequence[str]
) -> list[Cell]:
    """The chosen patterns over both schemes, in an order that alternates from run to run."""
    order = list(chosen) if run % 2 == 0 else list(reversed(chosen))
    schemes = ("http", "https") if run % 2 == 0 else ("https", "http")
    cells: list[Cell] = []
    for scheme in schemes:
        for pattern in order:
            cell = measure(nginx, ca, pattern, scheme, threads=threads, seconds=seconds)
            cells.append(cell)
            print(f"  run {run + 1} {scheme:5} {pattern:22} {cell.rps:8,.0f} req/s", flush=True)
    for scheme in schemes:
        floor = next(c for c in cells if c.scheme == scheme and c.pattern == FLOOR).rps
        for cell in cells:
            if cell.scheme == scheme:
                cell.ratio = cell.rps / floor
    return sorted(cells, key=lambda c: (c.scheme, list(PATTERNS).index(c.pattern)))


def scaling(nginx: Nginx, ca: str, seconds: float) -> list[Cell]:
    """wsgi_pool and a default module-level Session at 8, 16 and 32 threads per worker, over http."""
    cells = []
    for threads in (8, 16, 32):
        for pattern in ("wsgi_pool", "module_session"):
            cells.append(measure(nginx, ca, pattern, "http", threads=threads, seconds=seconds))
            print(f"  {threads:2} threads {pattern:16} {cells[-1].rps:8,.0f} req/s", flush=True)
    return cells


def middleware_cost(nginx: Nginx, ca: str, seconds: float, rounds: int) -> list[tuple[Cell, Cell]]:
    """An app that makes no call, bare and wrapped in PoolMiddleware, alternating: (bare, wrapped)."""
    pairs = []
    for round_number in range(rounds):
        found: dict[str, Cell] = {}
        order = (
            ("bare", "bare_middleware") if round_number % 2 == 0 else ("bare_middleware", "bare")
        )
        for pattern in order:
            found[pattern] = measure(
                nginx, ca, pattern, "http", threads=8, seconds=seconds, path="/_bare"
            )
        bare, wrapped = found["bare"], found["bare_middleware"]
        pairs.append((bare, wrapped))
        print(
            f"  middleware round {round_number + 1}: {bare.rps:,.0f} / {wrapped.rps:,.0f} req/s, "
            f"{bare.cpu_us:.0f} / {wrapped.cpu_us:.0f} CPU us/req",
            flush=True,
        )
    return pairs


def _us(value: float) -> str:
    """Microseconds: whole ones, tenths below 10."""
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def micro(url: str, ca: str, environment: dict[str, str], calls: int) -> dict[str, float]:
    """The single-thread per-call micro benchmark, in a process with exactly ``environment``."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.micro", url, ca, str(calls)],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(ROOT),
        env=environment,
    ).stdout
    found: dict[str, float] = json.loads(out)
    return found


def kubernetes_like(count: int) -> dict[str, str]:
    """``count`` variables of the kind a Kubernetes pod gets: one set per service in its namespace."""
    found: dict[str, str] = {}
    for index in range(count // 6 + 1):
        name = f"SERVICE_{index}"
        address = f"10.96.{index // 250}.{index % 250 + 1}"
        found |= {
            f"{name}_SERVICE_HOST": address,
            f"{name}_SERVICE_PORT": "8080",
            f"{name}_PORT": f"tcp://{address}:8080",
            f"{name}_PORT_8080_TCP": f"tcp://{address}:8080",
            f"{name}_PORT_8080_TCP_PROTO": "tcp",
            f"{name}_PORT_8080_TCP_ADDR": address,
        }
    return dict(list(found.items())[:count])


def memory(nginx: Nginx) -> dict[str, dict[str, int]]:
    """One sync worker's memory: requests imported, against wsgi_pool loaded and warm (50 calls)."""
    found = {}
    for mode in ("requests", "wsgi_pool"):
        flags = ["-k", "sync", "--workers", "1"]
        env = {"BENCH_MODE": mode, "BENCH_UPSTREAM": nginx.url}
        if mode == "wsgi_pool":
            flags = ["-c", str(ROOT / "deploy" / "gunicorn.conf.py"), *flags]
            env |= {
                "WEB_CONCURRENCY": "1",
                "GUNICORN_THREADS": "1",
                "GUNICORN_WORKER_CLASS": "sync",
            }
        with GunicornServer("benchmarks.memory_app:app", flags, env=env, cwd=str(ROOT)) as server:
            for _ in range(50):
                _get(server.url, "/")
            found[mode] = json.loads(_get(server.url, "/_rss"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5, help="measured seconds per cell")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--micro-calls", type=int, default=3000)
    parser.add_argument(
        "--pattern", choices=list(PATTERNS), action="append", help="only these (and the floor)"
    )
    parser.add_argument(
        "--only", choices=("patterns", "scaling", "middleware", "micro", "memory"), action="append"
    )
    args = parser.parse_args(argv)
    parts = set(args.only or ("patterns", "scaling", "middleware", "micro", "memory"))
    with (
        tempfile.TemporaryDirectory(prefix="wsgi_pool-bench-") as directory,
        upstream(directory) as (nginx, ca),
    ):
        if "patterns" in parts:
            runs = []
            for run in range(args.runs):
                print(f"patterns, run {run + 1} of {args.runs}:", flush=True)
                chosen = [p for p in PATTERNS if p in (args.pattern or PATTERNS) or p == FLOOR]
                runs.append(
                    patterns_run(
                        nginx, ca, run, seconds=args.seconds, threads=args.threads, chosen=chosen
                    )
                )
            for number, cells in enumerate(runs, 1):
                print(f"\n### Run {number}\n")
                print(table(cells, lambda c: f"{PATTERNS[c.pattern]} ({c.scheme})"))
            print("\n### Ratio to persistent http.client, run by run\n")
            print(summary(runs))
        if "scaling" in parts:
            print("\nthreads:", flush=True)
            cells = scaling(nginx, ca, args.seconds)
            print("\n### Threads per worker (http, 2 workers)\n")
            print(table(cells, lambda c: f"{PATTERNS[c.pattern]}, {c.threads} threads"))
        if "middleware" in parts:
            print("\nmiddleware:", flush=True)
            pairs = middleware_cost(nginx, ca, args.seconds, rounds=6)
            print("\n### The middleware on an app that makes no call\n")
            print(
                "| round | bare req/s | wrapped req/s | ratio | bare CPU us/req | wrapped | extra |"
            )
            print("|---:|---:|---:|---:|---:|---:|---:|")
            ratios: list[float] = []
            overhead: list[float] = []
            for number, (bare, wrapped) in enumerate(pairs, 1):
                ratios.append(wrapped.rps / bare.rps)
                overhead.append(wrapped.cpu_us / bare.cpu_us - 1)
                print(
                    f"| {number} | {bare.rps:,.0f} | {wrapped.rps:,.0f} | {ratios[-1]:.3f} "
                    f"| {bare.cpu_us:.0f} | {wrapped.cpu_us:.0f} | {overhead[-1]:+.1%} |"
                )
            print(
                f"\nmedian req/s ratio {statistics.median(ratios):.3f}; "
                f"median extra CPU per request {statistics.median(overhead):+.1%}"
            )
        if "micro" in parts:
            base = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
            print("\n### Single thread, microseconds per call (3 and 300 environment variables)\n")
            print("| client | scheme | 3 variables | 300 variables | ratio |")
            print("|---|---|---:|---:|---:|")
            for scheme, url in (("http", nginx.url), ("https", nginx.tls_url)):
                small = micro(url, ca, base, args.micro_calls)
                large = micro(
                    url, ca, {**kubernetes_like(300 - len(base)), **base}, args.micro_calls
                )
                for name, value in small.items():
                    print(
                        f"| {name} | {scheme} | {_us(value)} | {_us(large[name])} "
                        f"| {large[name] / value:.2f} |"
                    )
        if "memory" in parts:
            found = memory(nginx)
            print("\n### Memory of one sync worker (KiB)\n")
            print("| worker | RSS | PSS | private |")
            print("|---|---:|---:|---:|")
            for mode, values in found.items():
                private = values["private_clean"] + values["private_dirty"]
                print(f"| {mode} | {values['rss']:,} | {values['pss']:,} | {private:,} |")
            extra = found["wsgi_pool"]["rss"] - found["requests"]["rss"]
            print(
                f"\nwsgi_pool loaded and warm: {extra / 1024:+.2f} MiB RSS over requests imported"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
