"""Resilience with real hosts: replicas in network namespaces, behind one name or a balancer.

Each replica is a host of its own (``tests/netns.py``): a namespace, a veth pair, an address
assigned here, an upstream whose ``/who`` answers that address. A name stands for replicas
through an ``/etc/hosts`` of a child process's own mount namespace (``netns.with_hosts``),
which the child rewrites to move the name; a black-holed replica drops connects with
iptables; a per-connection round-robin balancer stands for a Kubernetes Service. (A slow
replica answers late itself: this kernel has no ``netem`` queueing discipline.) Assertions count answers, errors and packets.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wsgi_pool
from tests.balancer import Balancer
from tests.netns import Host, with_hosts
from tests.resilience_child import load
from wsgi_pool import (
    DeadlineExceeded,
    PoolConfig,
    PoolOverloaded,
    PoolTimeout,
    UpstreamConnectTimeout,
    UpstreamUnreachable,
)

NAME = "replicas.wsgi-pool.test"
PORT = 8080
URL = f"http://{NAME}:{PORT}"


@contextlib.contextmanager
def hosts(count: int) -> Iterator[list[Host]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(Host(PORT)) for _ in range(count)]


def hosts_file(tmp_path: Path, *replicas: Host) -> str:
    return "127.0.0.1 localhost\n" + "".join(f"{r.address} {NAME}\n" for r in replicas)


def child(tmp_path: Path, replicas: list[Host], config: dict[str, Any], *steps: Any) -> Any:
    """Run the steps in a child whose /etc/hosts names ``replicas`` NAME; its JSON result."""
    path = tmp_path / "hosts"
    path.write_text(hosts_file(tmp_path, *replicas))
    spec = {"config": config, "url": URL, "steps": list(steps)}
    done = with_hosts(str(path), sys.executable, "-m", "tests.resilience_child", json.dumps(spec))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def resolved(tmp_path: Path, replicas: list[Host]) -> list[str]:
    """The addresses NAME resolves to in the children, in the resolver's order."""
    path = tmp_path / "hosts"
    path.write_text(hosts_file(tmp_path, *replicas))
    code = f"import socket; print(' '.join(a[4][0] for a in socket.getaddrinfo({NAME!r}, {PORT}, type=socket.SOCK_STREAM)))"
    done = with_hosts(str(path), sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def syns(listing: str) -> int:
    """SYNs dropped, from ``iptables -L INPUT -v -x -n`` output."""
    return sum(int(line.split()[0]) for line in listing.splitlines() if " DROP " in f" {line} ")


def test_a_moved_name_is_followed_within_the_connection_age(tmp_path: Path) -> None:
    """Four threads of steady load on a name; it moves to another host. With the connection
    age (1 s here) the load follows the name within it; with no age, not one call does over
    the same time: the busy pool never idles, so it never resolves the name again."""
    with hosts(2) as (old, new):
        moved = hosts_file(tmp_path, new)
        steps = [
            {"do": "load", "label": "before", "threads": 4, "seconds": 1.0},
            {"do": "hosts", "text": moved},
            {"do": "load", "label": "moving", "threads": 4, "seconds": 1.5},
            {"do": "load", "label": "after", "threads": 4, "seconds": 1.5},
        ]
        aged = child(tmp_path, [old], {"max_connection_age": 1.0}, *steps)
        pinned = child(tmp_path, [old], {"max_connection_age": None}, *steps)
    assert set(aged["before"]["replicas"]) == {old.address}
    assert set(aged["after"]["replicas"]) == {new.address}  # every call of the last 1.5 s
    assert aged["stats"]["retired"] >= 4
    assert set(pinned["after"]["replicas"]) == {old.address}
    assert pinned["stats"]["retired"] == 0
    for run in (aged, pinned):
        assert all(not run[label]["errors"] for label in ("before", "moving", "after"))


def test_a_replica_added_behind_a_balancer_gets_traffic_within_the_age() -> None:
    """Three replicas behind a per-connection round-robin balancer, four threads of steady
    load; a fourth replica is added. With a 1 s connection age it answers calls within the
    next 2 s; with none it answers not one (every connection stays on the first three)."""
    with hosts(4) as replicas:
        found = {}
        for age in (1.0, None):
            first, fourth = replicas[:3], replicas[3]
            with (
                Balancer([(r.address, PORT) for r in first]) as balancer,
                wsgi_pool.client(PoolConfig(max_connection_age=age)) as http,
            ):
                load(http, balancer.url, threads=4, seconds=0.5)
                balancer.add((fourth.address, PORT))
                found[age] = load(http, balancer.url, threads=4, seconds=2.0)
                retired = http.pools.stats()[balancer.url].retired
            assert not found[age]["errors"]
            if age is None:
                assert retired == 0
    assert found[1.0]["replicas"].get(fourth.address, 0) > 0
    assert found[None]["replicas"].get(fourth.address, 0) == 0


def test_a_black_holed_replica_is_ejected_and_calls_go_on_to_the_others(tmp_path: Path) -> None:
    """Three replicas behind a name, the one the resolver lists first black-holed (its SYNs
    dropped), each call on a new connection (the replicas close them). Every one of 30 calls
    is answered, by the others; the dead one is tried three times (three dropped SYNs: the
    connects that ejected it), then skipped."""
    config = {"eject_after_failures": 3, "connect_timeout": 0.5, "ejection_time": 30.0}
    with hosts(3) as replicas:
        order = resolved(tmp_path, replicas)
        dead = next(r for r in replicas if r.address == order[0])
        dead.drop_connects()
        result = child(
            tmp_path,
            replicas,
            config,
            {"do": "load", "label": "calls", "threads": 1, "calls": 30, "path": "/who-close"},
        )
        dead_tried = dead.connects()
    assert sorted(order) == sorted(r.address for r in replicas)
    assert result["calls"]["errors"] == {}
    assert sum(result["calls"]["replicas"].values()) == 30
    assert dead.address not in result["calls"]["replicas"]
    assert dead_tried == 3
    assert result["stats"]["ejections"] == 1


def test_with_every_replica_down_calls_fail_at_once_and_recover(tmp_path: Path) -> None:
    """Two replicas behind a name, both black-holed, fail_fast_when_ejected on. The first calls
    spend connect timeouts until both are ejected; then calls fail with UpstreamEjected
    without a packet sent (the SYN count stands still). The replicas come back: once the ejection ends, a probe succeeds
    and every call is answered again."""
    with hosts(2) as replicas:
        for replica in replicas:
            replica.drop_connects()
        listing = [
            "sh",
            "-c",
            " && ".join(
                f"ip netns exec {r.namespace} iptables -L INPUT -v -x -n" for r in replicas
            ),
        ]
        restore = [
            "sh",
            "-c",
            " && ".join(f"ip netns exec {r.namespace} iptables -F" for r in replicas),
        ]
        result = child(
            tmp_path,
            replicas,
            {
                "eject_after_failures": 2,
                "fail_fast_when_ejected": True,
                "connect_timeout": 0.5,
                "ejection_time": 1.0,
                "retries": 0,
                "deadline": 5.0,
            },
            {"do": "load", "label": "ejecting", "threads": 1, "calls": 2},
            {"do": "run", "argv": listing, "label": "syns_ejecting"},
            {"do": "load", "label": "ejected", "threads": 1, "calls": 50},
            {"do": "run", "argv": listing, "label": "syns_ejected"},
            {"do": "run", "argv": restore},
            {"do": "sleep", "seconds": 1.2},
            {"do": "load", "label": "back", "threads": 1, "calls": 10},
        )
    assert result["ejecting"]["errors"] == {"UpstreamConnectTimeout": 2}
    assert result["ejected"]["errors"] == {"UpstreamEjected": 50}
    assert syns(result["syns_ejecting"]) == 4  # two calls, each trying both addresses
    assert syns(result["syns_ejected"]) == 4  # fifty calls: not one more packet
    assert result["back"]["errors"] == {}
    assert sum(result["back"]["replicas"].values()) == 10
    assert result["stats"]["ejections"] == 2


def test_max_pending_sheds_calls_past_the_cap() -> None:
    """A slow replica (each answer 0.5 s late), two connections, at most two calls waiting:
    of eight calls at once, two are sent, two wait and are answered, four fail at once with
    PoolOverloaded (a PoolTimeout), counted as shed; a second round the same."""
    with Host(PORT) as replica:
        config = PoolConfig(pool_maxsize=2, max_pending=2, pool_timeout=30.0, deadline=30.0)
        with wsgi_pool.client(config) as http:
            url = f"http://{replica.address}:{PORT}"
            barrier = threading.Barrier(8)
            outcomes: list[str] = []
            lock = threading.Lock()

            def call() -> None:
                barrier.wait()
                try:
                    outcome = str(http.get(f"{url}/slow?delay=0.5").status_code)
                except PoolTimeout as exc:
                    outcome = type(exc).__name__
                with lock:
                    outcomes.append(outcome)

            for _ in range(2):  # twice: a wait that ended leaves no count behind
                threads = [threading.Thread(target=call) for _ in range(8)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(60)
            counts = http.pools.stats()[url]
    assert sorted(outcomes) == ["200"] * 8 + [PoolOverloaded.__name__] * 8
    assert (counts.shed, counts.waiting, counts.in_use) == (8, 0, 0)
    assert counts.errors == {"PoolOverloaded": 8}


def test_connects_the_deadline_cut_short_eject_nothing() -> None:
    """A black-holed host and a 0.3 s deadline under a 5 s connect timeout: each call ends at
    its deadline, and none counts against the address (the host was not given its time)."""
    with Host(PORT) as host:
        host.drop_connects()
        url = f"http://{host.address}:{PORT}"
        config = PoolConfig(deadline=0.3, connect_timeout=5.0, eject_after_failures=2, retries=0)
        with wsgi_pool.client(config) as http:
            for _ in range(4):
                with pytest.raises(DeadlineExceeded):
                    http.get(f"{url}/who")
            assert http.pools.stats()[url].ejections == 0
        assert host.connects() == 4


def test_one_black_holed_address_fails_fast_only_when_asked() -> None:
    """One address, black-holed, a 0.2 s connect timeout (below the share floor, but not cut
    by the deadline: it counts). By default its ejection never stops calls (each still tries
    it: behind one address, a streak may be one bad replica's); with fail_fast_when_ejected,
    after two timeouts calls fail at once and send nothing."""
    with Host(PORT) as host:
        host.drop_connects()
        url = f"http://{host.address}:{PORT}"
        errors = {}
        for fail_fast in (False, True):
            config = PoolConfig(
                connect_timeout=0.2,
                eject_after_failures=2,
                retries=0,
                fail_fast_when_ejected=fail_fast,
            )
            with wsgi_pool.client(config) as http:
                for _ in range(5):
                    with pytest.raises((UpstreamUnreachable, UpstreamConnectTimeout)):
                        http.get(f"{url}/who")
                errors[fail_fast] = dict(http.pools.stats()[url].errors)
                assert http.pools.stats()[url].ejections >= 1
        assert host.connects() == 5 + 2
    assert errors == {
        False: {"UpstreamConnectTimeout": 5},
        True: {"UpstreamConnectTimeout": 2, "UpstreamEjected": 3},
    }
