"""Instructions per call: each client's keep-alive calls to a local nginx, counted by valgrind.

    python benchmarks/instructions.py [--calls 400] [--repeat 3] [--only CLIENT ...]
    python benchmarks/instructions.py --stages        (where wsgi_pool's instructions go)
    (or ./dev bench --instructions [...], which installs valgrind, pycurl and niquests)

Wall time on a shared machine moves 5-15% from run to run; instruction counts (valgrind's
callgrind, ``Collected``) repeat to a fraction of a percent. Each client runs in a process of
its own under callgrind, twice: ``--warm`` calls, then ``--warm + --calls`` calls; the
difference divided by ``--calls`` is what one call costs, start-up and imports cancelled out.
After the warm-up the process's objects are frozen (``gc.freeze()``): a garbage collection
the calls cause is counted, the traversal of everything imported is not (it made single runs
jump by a one-off collection). Each figure is the median of ``--repeat`` such pairs.

Two calls, each over http and https (TLS to a trusted local CA), one thread, one kept
connection: a GET whose answer is a 200-byte JSON body, and a POST of a 100-byte JSON body
answered with it. Clients: the peers (pycurl with a reused handle, persistent http.client,
urllib3's pool and pool manager, httpx, niquests, requests with and without the environment
read), and wsgi_pool as a handler uses it (a request-scoped client made every three calls, as
the middleware makes one per incoming request), with statistics not counted and with
Prometheus metrics kept; requests and wsgi_pool also with the 300 environment variables of a
Kubernetes pod. It prints the table, thousands of instructions per call, with each client's
ratio to ``urllib3.PoolManager``.

``--stages`` splits a wsgi_pool GET by where its instructions go: the same call entered at
each layer in turn (the client's ``get``, its ``send`` of a prepared request, the process
adapter, the shared adapter's one try, the pool's exchange, and the socket calls alone), each
layer's share the difference between one entry point and the next.
"""

from __future__ import annotations

import argparse
import compileall
import gc
import http.client
import importlib
import io
import json
import os
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PATH = "/json"
"""nginx answers it with a 200-byte JSON body (``tests/nginx.py``), to a GET and to a POST."""
POSTED = json.dumps({"id": 7, "name": "posted", "items": [1, 2, 3], "note": "x" * 39}).encode()
REFERENCE = "urllib3.PoolManager"
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
METHODS = ("GET", "POST")
CROWDED = ("requests.Session", "wsgi_pool (a request's client)")
"""The clients that read the environment: measured with 300 variables too."""

Call = Callable[[str, str], bytes]  # (method, url) -> body


def _pycurl(ca: str) -> Call:
    pycurl: Any = importlib.import_module("pycurl")  # ./dev bench installs it

    handle = pycurl.Curl()
    handle.setopt(pycurl.CAINFO, ca)
    handle.setopt(pycurl.HTTPHEADER, ["Content-Type: application/json"])

    def call(method: str, url: str) -> bytes:
        out = io.BytesIO()
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.WRITEDATA, out)
        if method == "POST":
            handle.setopt(pycurl.POSTFIELDS, POSTED)
        else:
            handle.setopt(pycurl.HTTPGET, 1)
        handle.perform()
        return out.getvalue()

    return call


def _http_client(url: str, ca: str) -> Call:
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=ca)
    connection = (
        http.client.HTTPSConnection(parts.hostname or "", parts.port, context=context)
        if parts.scheme == "https"
        else http.client.HTTPConnection(parts.hostname or "", parts.port)
    )
    prefix = len(f"{parts.scheme}://{parts.netloc}")
    headers = {"Content-Type": "application/json"}

    def call(method: str, target: str) -> bytes:
        body = POSTED if method == "POST" else None
        connection.request(method, target[prefix:], body=body, headers=headers if body else {})
        return connection.getresponse().read()

    return call


def _requests_like(session: Any) -> Call:
    def call(method: str, url: str) -> bytes:
        if method == "POST":
            return session.post(url, data=POSTED, headers=_JSON).content  # type: ignore[no-any-return]
        return session.get(url).content  # type: ignore[no-any-return]

    return call


_JSON = {"Content-Type": "application/json"}


def _wsgi_pool(url: str, ca: str, *, uncounted: bool = False, **settings: Any) -> Call:
    """What a handler does: a request-scoped client made every three calls, as the middleware
    makes one per incoming request, carrying the request's id."""
    import wsgi_pool  # noqa: PLC0415
    from wsgi_pool import Client, PoolConfig  # noqa: PLC0415
    from wsgi_pool._propagation import from_environ  # noqa: PLC0415

    pools = wsgi_pool.client(PoolConfig(ca_bundle=ca, **settings)).pools
    if uncounted:  # the upstream's counters made, then made to count nothing
        from benchmarks.micro import _Uncounted  # noqa: PLC0415

        Client(pools=pools).get(url + PATH)
        for stats in pools.adapter.stats.all():
            stats.__class__ = _Uncounted
    made: list[Any] = [None, 0]

    def call(method: str, url: str) -> bytes:
        if made[1] % 3 == 0:
            made[0] = Client(
                pools=pools, propagation=from_environ({"HTTP_X_REQUEST_ID": "b-1"}, "X-Request-ID")
            )
        made[1] += 1
        client = made[0]
        if method == "POST":
            return client.post(url, data=POSTED, headers=_JSON).content  # type: ignore[no-any-return]
        return client.get(url).content  # type: ignore[no-any-return]

    return call


def clients(url: str, ca: str) -> dict[str, Callable[[], Call]]:
    """Each client, made when asked (in the process that measures it)."""

    def requests_session(trust_env: bool) -> Call:
        import requests  # noqa: PLC0415

        session = requests.Session()
        session.verify = ca
        session.trust_env = trust_env
        return _requests_like(session)

    def httpx_client() -> Call:
        import httpx  # noqa: PLC0415

        return _requests_like(httpx.Client(verify=ssl.create_default_context(cafile=ca)))

    def niquests_session() -> Call:
        niquests: Any = importlib.import_module("niquests")  # in a venv of its own

        session = niquests.Session(disable_http2=True, disable_http3=True)
        session.verify = ca
        session.trust_env = False
        return _requests_like(session)

    def urllib3_pool() -> Call:
        import urllib3  # noqa: PLC0415

        pool = urllib3.connection_from_url(url, **({"ca_certs": ca} if "https" in url else {}))
        return _urllib3_like(pool)

    def urllib3_manager() -> Call:
        import urllib3  # noqa: PLC0415

        return _urllib3_like(urllib3.PoolManager(ca_certs=ca))

    return {
        "pycurl (reused handle)": lambda: _pycurl(ca),
        "persistent http.client": lambda: _http_client(url, ca),
        "urllib3 HTTPConnectionPool": urllib3_pool,
        "urllib3.PoolManager": urllib3_manager,
        "wsgi_pool (a request's client)": lambda: _wsgi_pool(url, ca),
        "wsgi_pool, statistics not counted": lambda: _wsgi_pool(url, ca, uncounted=True),
        "wsgi_pool, Prometheus metrics kept": lambda: _wsgi_pool(url, ca, prometheus=True),
        "httpx.Client": httpx_client,
        "niquests.Session": niquests_session,
        "requests.Session, environment not read": lambda: requests_session(False),
        "requests.Session": lambda: requests_session(True),
    }


def _urllib3_like(pool: Any) -> Call:
    def call(method: str, url: str) -> bytes:
        if method == "POST":
            return pool.request("POST", url, body=POSTED, headers=_JSON).data  # type: ignore[no-any-return]
        return pool.request("GET", url).data  # type: ignore[no-any-return]

    return call


# -- the stages: one wsgi_pool GET entered at each layer ----------------------------------------


def stages(url: str, ca: str) -> dict[str, Callable[[], Callable[[], object]]]:
    """The same GET entered at each layer, outermost first (internal entry points: the split
    is for this project's own tuning)."""
    import socket  # noqa: PLC0415

    import requests  # noqa: PLC0415

    import wsgi_pool  # noqa: PLC0415
    from wsgi_pool import _attempt, _deadline  # noqa: PLC0415

    def checked_timeout(connect: float, read: float) -> Any:
        from urllib3.util import Timeout  # noqa: PLC0415

        return Timeout(connect=connect, read=read)

    def attempt() -> Any:  # an older tree's Attempt takes no whole
        try:
            return _attempt.Attempt(whole=1 << 20)
        except TypeError:
            return _attempt.Attempt()

    target = url + PATH
    http = wsgi_pool.client(wsgi_pool.PoolConfig(ca_bundle=ca))
    http.get(target).content  # noqa: B018  (a kept connection, as every entry below finds it)

    def prepared() -> requests.PreparedRequest:
        return http.prepare_request(requests.Request("GET", target))

    def client_get() -> Callable[[], object]:
        return lambda: http.get(target).content

    def client_send() -> Callable[[], object]:
        request = prepared()
        options = {"proxies": {}, "stream": False, "verify": True, "cert": None}
        return lambda: http.send(request, **options).content

    def process_adapter() -> Callable[[], object]:
        request = prepared()
        mounted = http.get_adapter(target)
        return lambda: mounted.send(request).content

    def one_try() -> Callable[[], object]:
        request = prepared()
        adapter = http.pools.adapter
        options: dict[str, Any] = {"stream": False, "verify": ca, "cert": None, "proxies": {}}

        def run() -> object:
            token = _deadline.bind(_deadline.start_call(30.0, None))
            trying = _attempt.bind(attempt())
            try:
                return adapter.attempt(
                    request, timeout=checked_timeout(5.0, 15.0), **options
                ).content
            finally:
                _attempt.unbind(trying)
                _deadline.unbind(token)

        return run

    def pool_exchange() -> Callable[[], object]:
        request = prepared()
        adapter = http.pools.adapter
        pool: Any = adapter._keys.pool_for(adapter.poolmanager, request, ca, None)
        timeout = checked_timeout(5.0, 15.0)

        def run() -> object:
            token = _deadline.bind(_deadline.start_call(30.0, None))
            trying = _attempt.bind(attempt())
            try:
                try:
                    answer = pool.send(request, timeout, adapter.max_retries, whole=True)
                except TypeError:  # an older tree's exchange reads no answer whole
                    answer = pool.send(request, timeout, adapter.max_retries)
                body = getattr(answer, "wp_body", None)
                if body is None:  # read as urllib3 reads it, the connection given back
                    body = answer.read(decode_content=True)
                    answer.release_conn()
                return body
            finally:
                _attempt.unbind(trying)
                _deadline.unbind(token)

        return run

    def sockets() -> Callable[[], object]:
        parts = urlsplit(url)
        sock: Any = socket.create_connection((parts.hostname, parts.port or 80))
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=ca)
            sock = context.wrap_socket(sock, server_hostname=parts.hostname)
        head = (
            f"GET {PATH} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: b\r\n"
            "Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n"
        ).encode()

        def run() -> object:
            sock.sendall(head)
            data = sock.recv(65536)
            while not data.endswith(b"}"):
                data += sock.recv(65536)
            return data

        return run

    environ = {"HTTP_X_REQUEST_ID": "b-1", "REQUEST_METHOD": "GET", "PATH_INFO": "/"}

    def app(environ: Any, start_response: Any) -> list[bytes]:
        return [b"ok"]

    def bare_app() -> Callable[[], object]:
        return lambda: app(dict(environ), None)

    def middleware() -> Callable[[], object]:
        wrapped = wsgi_pool.PoolMiddleware(app)
        return lambda: wrapped(dict(environ), None)  # type: ignore[arg-type]

    return {
        "an app that makes no call, bare": bare_app,
        "the same app in the middleware": middleware,
        "the client's get (all of it)": client_get,
        "Client.send of a prepared request": client_send,
        "the process adapter's send": process_adapter,
        "the shared adapter's one try": one_try,
        "the pool's exchange": pool_exchange,
        "the socket calls alone": sockets,
    }


STAGE_NAMES = {
    "the client's get (all of it)": "preparing: the request, its deadline, its settings",
    "Client.send of a prepared request": "requests' send: hooks, cookies, redirects, the body",
    "the process adapter's send": "the call's policies: deadline, retries, statistics, cap",
    "the shared adapter's one try": "the try: the pool found, requests' response built",
    "the pool's exchange": "the exchange: connection out and back, head, answer parsed",
    "the socket calls alone": "the socket calls: send and receive (and TLS)",
}


# -- measuring ---------------------------------------------------------------------------------


def child(kind: str, name: str, url: str, ca: str, method: str, calls: int) -> None:  # noqa: PLR0917
    """In the process valgrind counts: ``calls`` calls of one client (or stage)."""
    if kind == "stage":
        run = stages(url, ca)[name]()
        step = run
    else:
        call = clients(url, ca)[name]()
        target = url + PATH

        def step() -> object:
            return call(method, target)

    for _ in range(3):  # connected, warm
        step()
    gc.collect()
    gc.freeze()
    for _ in range(calls):
        step()
    sys.stdout.flush()
    os._exit(0)  # no interpreter teardown: its work varies from run to run, and is not a call's


def count(  # noqa: PLR0917
    kind: str, name: str, url: str, ca: str, method: str, calls: int, env: dict[str, str]
) -> int:
    """Instructions of one process that makes ``calls`` calls."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            interpreter(name),
            str(Path(__file__).resolve()),
            "--child",
            kind,
            name,
            url,
            ca,
            method,
            str(calls),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=str(ROOT),
        env=env,
    )
    found = COLLECTED.findall(done.stderr)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"callgrind said no total for {name}: {done.stderr[-3000:]}")
    return int(found[-1])


NIQUESTS_PYTHON: Final = ROOT / ".venv-niquests" / "bin" / "python"
"""niquests installs urllib3-future over urllib3: it runs from a virtual environment of its
own (``./dev bench`` makes it)."""


def interpreter(name: str) -> str:
    """The Python that runs client ``name``'s process."""
    if name != "niquests.Session":
        return sys.executable
    if not NIQUESTS_PYTHON.exists():
        raise RuntimeError(f"{NIQUESTS_PYTHON} is missing: ./dev bench --instructions makes it")
    return str(NIQUESTS_PYTHON)


def per_call(  # noqa: PLR0917
    kind: str, name: str, url: str, ca: str, method: str, args: Any, env: dict[str, str]
) -> float:
    """Instructions one call costs: the difference of two runs over the calls between them;
    the median of ``--repeat`` pairs."""
    found = []
    for _ in range(args.repeat):
        small = count(kind, name, url, ca, method, args.warm, env)
        large = count(kind, name, url, ca, method, args.warm + args.calls, env)
        found.append((large - small) / args.calls)
    return float(statistics.median(found))


def kubernetes_environment(base: dict[str, str]) -> dict[str, str]:
    from benchmarks.wire import kubernetes_like  # noqa: PLC0415

    return {**kubernetes_like(300 - len(base)), **base}


def _k(value: float) -> str:
    return f"{value / 1000:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=400, help="calls counted per figure")
    parser.add_argument("--warm", type=int, default=100, help="calls before those counted")
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs per figure (median)")
    parser.add_argument("--only", action="append", help="only these clients (and the reference)")
    parser.add_argument(
        "--stages", action="store_true", help="where a wsgi_pool GET's instructions go"
    )
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, name, url, ca, method, calls = args.child
        child(kind, name, url, ca, method, int(calls))
        return 0

    from benchmarks.wire import upstream  # noqa: PLC0415

    # Bytecode compiled once, here: the first process to import a module would otherwise
    # compile it, a one-off cost in one run of a pair.
    for package in ("wsgi_pool", "benchmarks"):
        compileall.compile_dir(str(ROOT / package), quiet=1)
    base = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
    with (
        tempfile.TemporaryDirectory(prefix="wsgi_pool-instructions-") as directory,
        upstream(directory) as (nginx, ca),
    ):
        schemes = (("http", nginx.url), ("https", nginx.tls_url))
        if args.stages:
            return _stages(schemes, ca, args, base)
        names = list(clients(nginx.url, ca))
        chosen = [n for n in names if not args.only or n in args.only or n == REFERENCE]
        crowded = kubernetes_environment(base)
        runs = [(name, name, base) for name in chosen] + [
            (f"{name}, 300 variables", name, crowded) for name in CROWDED if name in chosen
        ]
        table: dict[tuple[str, str, str], float] = {}
        for method in METHODS:
            for scheme, url in schemes:
                for label, name, environment in runs:
                    print(f"{method} {scheme} {label} ...", file=sys.stderr, flush=True)
                    table[(label, method, scheme)] = per_call(
                        "client", name, url, ca, method, args, environment
                    )
    _print_table(table)
    return 0


def _print_table(table: dict[tuple[str, str, str], float]) -> None:
    columns = [(method, scheme) for method in METHODS for scheme in ("http", "https")]
    print("\n### Thousands of instructions per keep-alive call (valgrind callgrind)\n")
    head = " | ".join(f"{m} {s}" for m, s in columns)
    ratios = " | ".join(f"{m} {s} / PoolManager" for m, s in columns)
    print(f"| client | {head} | {ratios} |")
    print("|---|" + "---:|" * (2 * len(columns)))
    rows = sorted({name for name, _, _ in table}, key=lambda n: table[(n, "GET", "http")])
    for name in rows:
        values = " | ".join(_k(table[(name, m, s)]) for m, s in columns)
        shares = " | ".join(
            f"{table[(name, m, s)] / table[(REFERENCE, m, s)]:.2f}" for m, s in columns
        )
        print(f"| {name} | {values} | {shares} |")
    print(json.dumps({" ".join(key): value for key, value in table.items()}))


def _stages(schemes: Any, ca: str, args: Any, base: dict[str, str]) -> int:
    bare, wrapped, *entries = list(stages(schemes[0][1], ca))
    # An incoming request costs a few thousand instructions, a call hundreds: ten times the
    # calls, so that what one run happens to do once (a collection) is spread thin.
    many = argparse.Namespace(**{**vars(args), "calls": args.calls * 10})
    app = [
        per_call("stage", name, schemes[0][1], ca, "GET", many, base) for name in (bare, wrapped)
    ]
    found: dict[tuple[str, str], float] = {}
    for scheme, url in schemes:
        for entry in entries:
            print(f"stage {scheme} {entry} ...", file=sys.stderr, flush=True)
            found[(entry, scheme)] = per_call("stage", entry, url, ca, "GET", args, base)
    print("\n### Where a wsgi_pool GET's instructions go (thousands per call)\n")
    print("| stage | http | https |")
    print("|---|---:|---:|")
    for index, entry in enumerate(entries):
        inner = entries[index + 1] if index + 1 < len(entries) else None
        cells = []
        for scheme, _ in schemes:
            value = found[(entry, scheme)] - (found[(inner, scheme)] if inner else 0.0)
            cells.append(_k(value))
        print(f"| {STAGE_NAMES[entry]} | {' | '.join(cells)} |")
    totals = " | ".join(_k(found[(entries[0], scheme)]) for scheme, _ in schemes)
    print(f"| **the whole call** | {totals} |")
    print(
        f"\nThe middleware per incoming request, an app that makes no call: "
        f"{_k(app[1] - app[0])} thousand instructions ({_k(app[1])} with it, {_k(app[0])} without)"
    )
    print(json.dumps({" ".join(key): value for key, value in found.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
