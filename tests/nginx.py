"""A real nginx on 127.0.0.1 in the foreground, its files in a temporary directory.

Used by the fault suite (a short ``keepalive_timeout``) and by the wire benchmark (an https
server beside the http one, a long keep-alive).
"""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from wsgi_pool.testing import _Running, free_port

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_timeout {keepalive};
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
{tls_server}
}}
"""

LOCATIONS = """
        location / { return 200 "ok"; }
        location /echo { return 200 "$arg_id"; }
        location = /json {
            default_type application/json;
            return 200 '{"id": 42, "name": "instructions", "tags": ["a", "b", "c"], "price": 12.5, "stock": true, "owner": {"id": 7, "name": "w"}, "pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}';
        }
        location = /cached { add_header Cache-Control "max-age=600"; return 200 "cached"; }
        location = /nginx_status { stub_status; }
"""

TLS_SERVER = """
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
{locations}
    }}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        raise RuntimeError(
            "nginx is not installed: ./dev test installs it (apt-get install nginx-light)"
        )
    return found


class Nginx(_Running):
    """nginx on a free loopback port with the given ``keepalive_timeout``.

    It answers 200 "ok", echoes the ``id`` query argument at ``/echo``, and reports its
    connection counts at ``/nginx_status``. With ``tls`` (the certificate chain file and the
    key file) it also serves the same over https on ``tls_port``.
    """

    def __init__(self, keepalive: str = "1s", *, tls: tuple[str, str] | None = None) -> None:
        self.keepalive = keepalive
        self.tls = tls
        self.port = 0
        self.tls_port = 0
        self._asked = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    def accepted(self) -> int:
        """Connections nginx accepted so far (``stub_status``), less those this method opened to ask."""
        self._asked += 1
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/nginx_status")
            text = connection.getresponse().read().decode()
        finally:
            connection.close()
        # "Active connections: 1 \nserver accepts handled requests\n 7 7 9 \n..."
        return int(text.splitlines()[2].split()[0]) - self._asked

    def start(self) -> Nginx:
        self._dir = tempfile.TemporaryDirectory(prefix="wsgi_pool-nginx-")
        root = self._dir.name
        self.port = free_port()
        tls_server = ""
        if self.tls is not None:
            self.tls_port = free_port()
            cert, key = self.tls
            tls_server = TLS_SERVER.format(
                port=self.tls_port, cert=cert, key=key, locations=LOCATIONS
            )
        conf = Path(root) / "nginx.conf"
        conf.write_text(
            CONFIG.format(
                root=root,
                port=self.port,
                keepalive=self.keepalive,
                locations=LOCATIONS,
                tls_server=tls_server,
            )
        )
        self._process = subprocess.Popen(
            [nginx_binary(), "-p", root, "-e", f"{root}/error.log", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self._process.poll() is not None or time.monotonic() > end:
                    log = (
                        (Path(root) / "error.log").read_text()
                        if (Path(root) / "error.log").exists()
                        else ""
                    )
                    self.stop()
                    raise RuntimeError(f"nginx did not start: {log}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
