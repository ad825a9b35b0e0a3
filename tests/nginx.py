"""A real nginx on 127.0.0.1 in the foreground, its files in a temporary directory."""

from __future__ import annotations

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
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_timeout {keepalive};
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok"; }}
    }}
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
    """nginx serving 200 "ok" on a free loopback port with the given ``keepalive_timeout``."""

    def __init__(self, keepalive: str = "1s") -> None:
        self.keepalive = keepalive
        self.port = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        self._dir = tempfile.TemporaryDirectory(prefix="wsgi_pool-nginx-")
        root = self._dir.name
        self.port = free_port()
        conf = Path(root) / "nginx.conf"
        conf.write_text(CONFIG.format(root=root, port=self.port, keepalive=self.keepalive))
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
