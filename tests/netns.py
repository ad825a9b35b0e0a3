"""A test host of its own: a network namespace joined to this one by a veth pair, running an
``Upstream`` on an address assigned inside it (its ``/who`` answers that address, and
``/who-close`` too, closing the connection after), whose
traffic can be silently dropped.

Only addresses assigned here (``10.<n>.<pid>.1/.2``, a /30 per host) are used. Everything
is removed on exit, failure included: the server process, the namespace, the veth pair.
Needs root, iproute2 and iptables (``./dev test`` installs the last two).

:func:`with_hosts` runs a command with an ``/etc/hosts`` of its own (a mount namespace), so a
name can stand for several hosts, or move from one to another.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
from types import TracebackType

from tests.support import ROOT

_numbers = itertools.count(1)

SERVER = """
import signal, sys
from wsgi_pool.testing import Upstream
server = Upstream(sys.argv[1], int(sys.argv[2])).start()
server.answer("/who", json={"replica": sys.argv[1]})
server.answer("/who-close", json={"replica": sys.argv[1]}, headers={"Connection": "close"})
print("ready", flush=True)
signal.sigwait({signal.SIGTERM})
server.stop()
"""


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=30)


class Host:
    """A namespace with an upstream at :attr:`url`; :meth:`drop` makes it vanish without a FIN or RST."""

    def __init__(self, port: int = 8080) -> None:
        number = next(_numbers)
        self.namespace = f"wp{os.getpid()}n{number}"
        self.outside = f"wp{os.getpid() % 100000}o{number}"[:15]
        self.inside = f"wp{os.getpid() % 100000}i{number}"[:15]
        base = f"10.{200 + number % 50}.{os.getpid() % 250}"
        self.host_address, self.address = f"{base}.1", f"{base}.2"
        self.port = port
        self.url = f"http://{self.address}:{port}"
        self.server: subprocess.Popen[str] | None = None

    def __enter__(self) -> Host:
        try:
            _run("ip", "netns", "add", self.namespace)
            _run("ip", "link", "add", self.outside, "type", "veth", "peer", "name", self.inside)
            _run("ip", "link", "set", self.inside, "netns", self.namespace)
            _run("ip", "addr", "add", f"{self.host_address}/30", "dev", self.outside)
            _run("ip", "link", "set", self.outside, "up")
            self._inside("ip", "addr", "add", f"{self.address}/30", "dev", self.inside)
            self._inside("ip", "link", "set", self.inside, "up")
            self._inside("ip", "link", "set", "lo", "up")
            self.start_server()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def _inside(self, *command: str) -> None:
        _run("ip", "netns", "exec", self.namespace, *command)

    def start_server(self) -> None:
        """Start the upstream inside the namespace and wait until it listens."""
        self.server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.namespace,
                sys.executable,
                "-c",
                SERVER,
                self.address,
                str(self.port),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.server.stdout is not None
        line = self.server.stdout.readline()
        assert line.strip() == "ready", f"the upstream in {self.namespace} did not start: {line!r}"

    def kill_server(self) -> None:
        """Kill the upstream at once (its kernel closes the sockets; with drop(), nobody hears)."""
        server, self.server = self.server, None
        if server is None:
            return
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()

    def drop(self) -> None:
        """Drop every packet in and out of the namespace: the host is gone, silently."""
        self._inside("iptables", "-I", "INPUT", "-j", "DROP")
        self._inside("iptables", "-I", "OUTPUT", "-j", "DROP")

    def restore(self) -> None:
        """Let packets through again."""
        self._inside("iptables", "-F")

    def drop_connects(self) -> None:
        """Drop every new connection's first packet (a black-holed host); counted by :meth:`connects`."""
        self._inside("iptables", "-I", "INPUT", "-p", "tcp", "--syn", "-j", "DROP")

    def connects(self) -> int:
        """Connection attempts (SYN packets) dropped since :meth:`drop_connects`."""
        listing = subprocess.run(
            ["ip", "netns", "exec", self.namespace, "iptables", "-L", "INPUT", "-v", "-x", "-n"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        return sum(int(line.split()[0]) for line in listing.splitlines() if " DROP " in f" {line} ")

    def remove(self) -> None:
        """Stop the server and delete the namespace and the veth pair (each step even if one failed)."""
        with contextlib.suppress(Exception):
            self.kill_server()
        for command in (
            ("ip", "netns", "del", self.namespace),
            ("ip", "link", "del", self.outside),
        ):
            subprocess.run(command, check=False, capture_output=True, timeout=30)


def with_hosts(hosts: str, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a mount namespace of its own whose ``/etc/hosts`` is the file
    ``hosts`` (bound, so writing to ``/etc/hosts`` inside changes that file; nothing outside
    sees it)."""
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"',
            hosts,
            *command,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
