"""Instructions per call: each client's keep-alive GETs to a local nginx, counted by valgrind.

    python benchmarks/instructions.py [--calls 400] [--only CLIENT ...]   (or ./dev bench --instructions)

Wall time on a shared machine moves 5-15% from run to run; instruction counts (valgrind's
callgrind, ``Collected``) repeat to a fraction of a percent. Each client runs in a process of
its own under callgrind, twice: ``--warm`` calls, then ``--warm + --calls`` calls; the
difference divided by ``--calls`` is what one call costs, start-up and imports cancelled out.
Each figure is the median of ``--repeat`` such pairs. One thread, a 200-byte JSON body, http and https (TLS to a trusted local CA), and the
300-variable environment of a Kubernetes pod for the clients that read the environment.

It prints the table, thousands of instructions per call, and each client's ratio to
``urllib3.PoolManager``. Needs valgrind (``./dev bench`` installs it from Debian's packages).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BODY_PATH = "/echo?id=instructions"
REFERENCE = "urllib3.PoolManager"
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def child_clients(url: str, ca: str) -> dict[str, Callable[[str], bytes]]:
    """Every client of the micro benchmark, and urllib3's single pool."""
    import urllib3  # noqa: PLC0415

    from benchmarks.micro import clients  # noqa: PLC0415

    found = clients(url, ca)
    tls = {"ca_certs": ca} if url.startswith("https:") else {}
    pool = urllib3.connection_from_url(url, **tls)
    found["urllib3 HTTPConnectionPool"] = lambda target: pool.request("GET", target).data
    return found


def child(name: str, url: str, ca: str, calls: int) -> None:
    """In the process valgrind counts: ``calls`` GETs with client ``name``."""
    get = child_clients(url, ca)[name]
    target = url + BODY_PATH
    for _ in range(calls):
        get(target)


def count(name: str, url: str, ca: str, calls: int, environment: dict[str, str]) -> int:
    """Instructions of one process that makes ``calls`` GETs with ``name``."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            name,
            url,
            ca,
            str(calls),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(ROOT),
        env=environment,
    )
    found = COLLECTED.findall(done.stderr)
    if not found:
        raise RuntimeError(f"callgrind said no total for {name}: {done.stderr[-2000:]}")
    return int(found[-1])


def per_call(
    name: str,
    url: str,
    ca: str,
    *,
    warm: int,
    calls: int,
    environment: dict[str, str],
    repeat: int = 1,
) -> float:
    """Instructions one call costs: the difference of two runs, over the calls between them;
    the median of ``repeat`` such pairs (a run that met a one-off cost, such as a connection
    the server closed, is outvoted)."""
    found = []
    for _ in range(repeat):
        small = count(name, url, ca, warm, environment)
        large = count(name, url, ca, warm + calls, environment)
        found.append((large - small) / calls)
    return statistics.median(found)


def kubernetes_environment(base: dict[str, str]) -> dict[str, str]:
    from benchmarks.wire import kubernetes_like  # noqa: PLC0415

    return {**kubernetes_like(300 - len(base)), **base}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=400, help="calls counted per client")
    parser.add_argument("--warm", type=int, default=100, help="calls before those counted")
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs per figure (median)")
    parser.add_argument("--only", action="append", help="only these clients (and the reference)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, url, ca, calls = args.child
        child(name, url, ca, int(calls))
        return 0

    from benchmarks.wire import upstream  # noqa: PLC0415

    base = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
    with (
        tempfile.TemporaryDirectory(prefix="wsgi_pool-instructions-") as directory,
        upstream(directory) as (nginx, ca),
    ):
        names = list(child_clients(nginx.url, ca))
        chosen = [n for n in names if not args.only or n in args.only or n == REFERENCE]
        # Every client in a bare environment; those that read the environment, in a pod's too.
        crowded = kubernetes_environment(base)
        runs = [(name, name, base) for name in chosen] + [
            (f"{name}, 300 variables", name, crowded)
            for name in ("requests.Session", "wsgi_pool (environ client)")
            if name in chosen
        ]
        table: dict[tuple[str, str], float] = {}
        for scheme, url in (("http", nginx.url), ("https", nginx.tls_url)):
            for label, name, environment in runs:
                print(f"{scheme} {label} ...", file=sys.stderr, flush=True)
                table[(label, scheme)] = per_call(
                    name,
                    url,
                    ca,
                    warm=args.warm,
                    calls=args.calls,
                    environment=environment,
                    repeat=args.repeat,
                )
    print("\n### Thousands of instructions per keep-alive GET (valgrind callgrind)\n")
    print(f"| client | http | https | http / {REFERENCE} | https / {REFERENCE} |")
    print("|---|---:|---:|---:|---:|")
    rows = sorted({name for name, _ in table}, key=lambda n: table.get((n, "http"), 0.0))
    for name in rows:
        http, https = table[(name, "http")], table[(name, "https")]
        print(
            f"| {name} | {http / 1000:,.0f} | {https / 1000:,.0f} | "
            f"{http / table[(REFERENCE, 'http')]:.2f} | {https / table[(REFERENCE, 'https')]:.2f} |"
        )
    print(json.dumps({f"{name} ({scheme})": value for (name, scheme), value in table.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
