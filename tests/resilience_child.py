"""Load against replicas, in steps, from a process of its own (see ``tests/test_resilience.py``).

Run as ``python -m tests.resilience_child SPEC`` (usually inside ``tests.netns.with_hosts``,
so a name can stand for several replicas and move): SPEC is JSON with ``config`` (PoolConfig
fields), ``url`` and ``steps``; each step is one of

- ``{"do": "load", "label": L, "threads": T, "calls": N}`` or ``"seconds": S`` instead of
  ``calls``: T threads call ``url + "/who"`` (N calls each, or for S seconds; ``"path":
  "/who-close"``: the replica closes each connection after its answer);
- ``{"do": "hosts", "text": ...}``: ``/etc/hosts`` rewritten in place;
- ``{"do": "run", "argv": [...]}``: a command run (``ip netns exec ... iptables -F``), its
  output kept under ``label`` if given;
- ``{"do": "sleep", "seconds": S}``.

It prints one JSON line: per label, the answers by replica, the errors by kind and the
longest call in seconds; and ``stats``, the upstream's counters at the end.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
import time
from typing import Any

import wsgi_pool
from wsgi_pool import PoolConfig


def load(
    http: Any,
    url: str,
    *,
    threads: int,
    calls: int | None = None,
    seconds: float | None = None,
    path: str = "/who",
) -> dict[str, Any]:
    """Calls from ``threads`` threads (``calls`` each, or for ``seconds``): what answered, what failed."""
    replicas: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    longest = [0.0]
    lock = threading.Lock()
    ends = None if seconds is None else time.monotonic() + seconds

    def caller() -> None:
        made = 0
        while (ends is None and made < (calls or 0)) or (
            ends is not None and time.monotonic() < ends
        ):
            made += 1
            started = time.monotonic()
            try:
                replica = http.get(f"{url}{path}").json()["replica"]
            except Exception as exc:  # counted by kind: the scenario asserts on them
                outcome: tuple[str, str] = ("error", type(exc).__name__)
            else:
                outcome = ("replica", replica)
            took = time.monotonic() - started
            with lock:
                (replicas if outcome[0] == "replica" else errors)[outcome[1]] += 1
                longest[0] = max(longest[0], took)
            if ends is not None:
                time.sleep(0.02)

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {"replicas": dict(replicas), "errors": dict(errors), "longest": longest[0]}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    url = spec["url"]
    with wsgi_pool.client(PoolConfig(**spec["config"])) as http:
        for step in spec["steps"]:
            kind = step["do"]
            if kind == "load":
                results[step["label"]] = load(
                    http,
                    url,
                    threads=step.get("threads", 1),
                    calls=step.get("calls"),
                    seconds=step.get("seconds"),
                    path=step.get("path", "/who"),
                )
            elif kind == "hosts":
                with open("/etc/hosts", "w", encoding="ascii") as hosts:  # in place: it is bound
                    hosts.write(step["text"])
            elif kind == "run":
                done = subprocess.run(
                    step["argv"], check=True, capture_output=True, text=True, timeout=30
                )
                if "label" in step:
                    results[step["label"]] = done.stdout
            else:
                time.sleep(step["seconds"])
        results["stats"] = http.pools.stats()[url].as_dict()
    return results


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
