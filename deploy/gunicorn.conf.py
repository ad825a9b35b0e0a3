"""A production gunicorn configuration for an app wrapped in ``wsgi_pool.PoolMiddleware``.

    gunicorn -c deploy/gunicorn.conf.py myproject.wsgi:application

Settings come from the environment so one file serves every stage; gunicorn's command-line
flags still win over this file. ``WSGI_POOL_*`` variables tune the pools (see the README);
by default each worker keeps ``threads`` connections per upstream.

Prometheus (optional): ``WSGI_POOL_METRICS_PATH=/metrics`` and, with more than one worker,
``PROMETHEUS_MULTIPROC_DIR`` pointing at an empty directory, set before gunicorn starts.
``wsgi-pool explain -c deploy/gunicorn.conf.py`` prints what this file gives each worker.
"""

import os
from pathlib import Path

# The hooks: validate settings in the master, record each worker's concurrency (and timeout)
# after fork, build its pools once the app is loaded, log them if the worker is aborted,
# close them when it exits, and (with PROMETHEUS_MULTIPROC_DIR set) take a dead worker's
# gauges out of the Prometheus sums.
from wsgi_pool.gunicorn import (
    child_exit,
    post_fork,
    post_worker_init,
    worker_abort,
    worker_exit,
)
from wsgi_pool.gunicorn import on_starting as _wsgi_pool_on_starting


def on_starting(server: object) -> None:
    """Master, before anything: an empty Prometheus multiprocess directory, then wsgi_pool's check.

    prometheus_client keeps each worker's numbers in files in PROMETHEUS_MULTIPROC_DIR; files
    left by an earlier run would be added to this one's. The directory belongs to this server
    alone (never share it between two).
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
    _wsgi_pool_on_starting(server)


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# A gthread worker never kills a thread stuck on an upstream, and a sync worker is killed
# without a response: wsgi_pool's default deadline per call stays below this (20 s, or 3/4
# of the timeout when that is less).
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))

# Logs to stderr: gunicorn's own, wsgi_pool's decisions (one line per worker at start) and
# warnings from any library (urllib3's "Connection pool is full" among them).
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        "wsgi_pool": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "generic",
            "stream": "ext://sys.stderr",
        },
    },
    "formatters": {
        "generic": {
            "format": "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "datefmt": "[%Y-%m-%d %H:%M:%S %z]",
        },
    },
}
