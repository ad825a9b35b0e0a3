"""``wsgi-pool explain``: the pool settings a gunicorn configuration gives each worker, and why.

    wsgi-pool explain -c deploy/gunicorn.conf.py
    wsgi-pool explain --workers 4 --threads 16 -k gthread --timeout 30
    WSGI_POOL_POOL_BLOCK=false wsgi-pool explain -c gunicorn.conf.py --json

The arguments are gunicorn's own, read by gunicorn's own parser in gunicorn's order: the
configuration file (``-c``, else ``./gunicorn.conf.py`` if there is one), then
``GUNICORN_CMD_ARGS``, then the command line. ``WSGI_POOL_*`` variables apply on top, as
they do in a worker. Nothing is started and no app is loaded, so settings given in code are
not seen (it says so). The configuration's hooks are checked: each of wsgi_pool's must be
there, or called from a hook of the user's own with its name; what a missing or replaced one
leaves undone is a warning, and the sizing shown is the one the workers will really get.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TextIO

from . import _integrations
from ._config import PoolConfig
from ._errors import ConfigError
from ._sizing import PoolSizing, size_pools


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """What one gunicorn configuration means for the pools."""

    workers: int
    worker_class: str
    threads: int
    worker_connections: int
    worker_timeout: float
    config: PoolConfig
    sizing: PoolSizing
    notes: tuple[str, ...] = ()
    """What the configuration's hooks leave undone, and what the integrations warn of (each
    a warning, before the sizing's own)."""

    @property
    def per_upstream(self) -> int:
        """Connections one upstream can see from the whole server: workers x pool_maxsize."""
        return self.workers * self.sizing.pool_maxsize

    def as_dict(self) -> dict[str, Any]:
        """The explanation as plain JSON-ready values."""
        sizing = self.sizing
        settings = {
            name: {"value": getattr(sizing, name), "why": sizing.reasons[name]}
            for name in sizing.reasons
        }
        return {
            "server": {
                "workers": self.workers,
                "worker_class": self.worker_class,
                "threads": self.threads,
                "worker_connections": self.worker_connections,
                "timeout": self.worker_timeout,
            },
            "per_worker": settings,
            "per_call": _per_call(self.config),
            "whole_server": {
                "connections_per_upstream": self.per_upstream,
                "connections_in_all": self.per_upstream * sizing.pool_connections,
            },
            "fleet": {
                "replicas": self.config.replicas or 1,
                "connections_per_upstream": (self.config.replicas or 1) * self.per_upstream,
                "budget": self.config.fleet_connections,
            },
            "upstreams": {
                origin: {k: v for k, v in dataclasses.asdict(settings).items() if v is not None}
                for origin, settings in self.config.upstreams.items()
            },
            "warnings": [*self.notes, *sizing.warnings],
            "not_seen": NOT_SEEN,
        }


def _per_call(config: PoolConfig) -> dict[str, Any]:
    return {
        "connect_timeout": config.connect_timeout,
        "read_timeout": config.read_timeout,
        "retries": config.retries,
        "retry_statuses": [] if config.mesh else sorted(config.retry_statuses),
        "idle_timeout": config.idle_timeout,
        "max_connection_age": config.max_connection_age,
        "max_response_bytes": config.max_response_bytes,
        "eject_after_failures": config.eject_after_failures,
        "fail_fast_when_ejected": config.fail_fast_when_ejected,
        "max_pending": config.max_pending,
        "mesh": config.mesh,
    }


@contextlib.contextmanager
def _argv(argv: Sequence[str]) -> Iterator[None]:
    """gunicorn's parser reads ``sys.argv``: set it for the parse, then put it back."""
    saved = sys.argv
    sys.argv = ["gunicorn", *argv]
    try:
        yield
    finally:
        sys.argv = saved


def gunicorn_config(argv: Sequence[str]) -> Any:
    """gunicorn's ``Config`` for these command-line arguments, loaded as gunicorn loads it."""
    from gunicorn.app.base import Application  # noqa: PLC0415  (gunicorn is optional)

    class _Settings(Application):  # type: ignore[misc]  # gunicorn is untyped
        """An application that only loads its configuration."""

        def init(self, parser: Any, opts: Any, args: Any) -> None:
            return None

        def load(self) -> None:  # pragma: no cover  (never run: nothing is served)
            return None

    with _argv(argv):
        return _Settings(usage="wsgi-pool explain [gunicorn arguments]").cfg


NOT_SEEN: Final = (
    "settings given in code (PoolMiddleware(app, config), Flask's or Django's WSGI_POOL) are "
    "not seen here: no app is loaded (a Flask or Django dict applies over the WSGI_POOL_* "
    "variables shown; a PoolConfig given to PoolMiddleware is used as it is)"
)

_UNDONE: Final = {
    "on_starting": "a bad WSGI_POOL_* setting stops each worker as it boots, not gunicorn at start",
    "post_fork": "pools made while the app is imported are sized without the worker's concurrency",
    "post_worker_init": "the pools are built on the first request, and their sizing is not in gunicorn's log",
    "worker_abort": "a worker killed at its timeout does not log which upstream calls were in flight",
    "worker_exit": "a worker's idle connections are not closed when it exits",
    "child_exit": "with PROMETHEUS_MULTIPROC_DIR, the gauges of dead workers stay in the sums",
}


def calls(hook: Any, ours: Any, module: Any) -> bool:
    """Whether ``hook`` (a function of the user's) calls ``ours``: it names it, directly, as an
    attribute of ``wsgi_pool.gunicorn`` (``wsgi_pool_hooks.post_fork(server, worker)``) or by
    importing it, itself or in a function it defines; through a decorator (``__wrapped__``)
    or ``functools.partial`` too. A heuristic: a worker's first request checks what ran."""
    hook = inspect.unwrap(hook)
    while isinstance(hook, functools.partial):
        hook = inspect.unwrap(hook.func)
    if hook is ours:
        return True
    code = getattr(hook, "__code__", None)
    if code is None:
        return False
    return _names(code, getattr(hook, "__globals__", {}), ours, module)


def _names(code: Any, scope: dict[str, Any], ours: Any, module: Any) -> bool:
    names = set(code.co_names)
    if ours.__name__ in names and any(n.startswith(module.__name__) for n in names):
        return True  # from wsgi_pool.gunicorn import post_fork, inside the hook
    for name in names:
        found = scope.get(name)
        if found is ours:
            return True
        if ours.__name__ in names and (
            found is module or getattr(found, "gunicorn", None) is module
        ):
            return True
    return any(
        _names(inner, scope, ours, module)
        for inner in code.co_consts
        if isinstance(inner, type(code))  # a function defined inside the hook
    )


def hook_warnings(cfg: Any) -> dict[str, str]:
    """What the configuration's hooks leave undone, by hook: each of wsgi_pool's hooks is
    ours, or a hook of the user's that calls ours; else it is missing (gunicorn's default) or
    replaced."""
    from . import gunicorn as module  # noqa: PLC0415  (gunicorn's hooks: gunicorn is installed)

    found = {}
    for name in module.__all__:
        ours = getattr(module, name)
        hook = getattr(cfg, name, None)
        if hook is ours or calls(hook, ours, module):
            continue
        if getattr(hook, "__module__", None) == "gunicorn.config":
            found[name] = f"{name} is not in the configuration: {_UNDONE[name]}"
        else:
            found[name] = (
                f"{name} is a hook of your own that does not call wsgi_pool's: "
                f"{_UNDONE[name]} (call wsgi_pool.gunicorn.{name} from it)"
            )
    return found


def explain(argv: Sequence[str], environ: dict[str, str] | None = None) -> Explanation:
    """The explanation for gunicorn arguments ``argv`` and ``WSGI_POOL_*`` variables."""
    cfg = gunicorn_config(argv)
    # Hooks can only be given in a configuration file: without one, arguments alone say what
    # a file with the hooks and these settings gives.
    file = getattr(cfg, "config", None)
    hooks = hook_warnings(cfg) if file and os.path.isfile(file) else {}
    # Without post_fork and post_worker_init a worker never learns gunicorn's concurrency.
    unsized = "post_fork" in hooks and "post_worker_init" in hooks
    config = PoolConfig.from_env(environ) if unsized else PoolConfig.from_gunicorn(cfg, environ)
    notes = _integrations.check(config, here=False)  # the server's own environment
    return Explanation(
        workers=cfg.workers,
        worker_class=str(cfg.worker_class_str),
        threads=cfg.threads,
        worker_connections=cfg.worker_connections,
        worker_timeout=float(cfg.timeout),
        config=config,
        sizing=size_pools(config),
        notes=(*hooks.values(), *notes),
    )


def render(found: Explanation) -> str:
    """The explanation as text: each number with its reason, then the warnings."""
    data = found.as_dict()
    server = data["server"]
    lines = [
        f"gunicorn: {server['workers']} worker{'s' if server['workers'] != 1 else ''}, "
        f"worker_class={server['worker_class']}, threads={server['threads']}, "
        f"worker_connections={server['worker_connections']}, timeout={server['timeout']:g} s",
        "",
        "Per worker (each builds its own pools after fork):",
    ]
    width = max(len(name) for name in [*data["per_worker"], *data["per_call"]])
    lines += [
        f"  {name:<{width}}  {entry['value']!r:<6}  {entry['why']}"
        for name, entry in data["per_worker"].items()
    ]
    lines += ["", "Per call and connection (unless an upstream or the call says otherwise):"]
    lines += [f"  {name:<{width}}  {value!r}" for name, value in data["per_call"].items()]
    whole = data["whole_server"]
    pool = found.sizing
    lines += [
        "",
        f"Whole server ({server['workers']} workers):",
        f"  connections to any one upstream: at most {whole['connections_per_upstream']} "
        f"({server['workers']} workers x pool_maxsize {pool.pool_maxsize})",
        f"  connections in all: at most {whole['connections_in_all']} "
        f"(x pool_connections {pool.pool_connections} upstreams kept per worker)",
    ]
    fleet = data["fleet"]
    budget = fleet["budget"]
    lines += [
        f"  every replica together ({fleet['replicas']} "
        f"replica{'s' if fleet['replicas'] != 1 else ''}): at most "
        f"{fleet['connections_per_upstream']} connections to any one upstream"
        + ("" if budget is None else f" (fleet budget {budget})"),
    ]
    if data["upstreams"]:
        lines += ["", "Upstreams with their own settings:"]
        lines += [
            f"  {origin}: " + ", ".join(f"{k}={v!r}" for k, v in settings.items())
            for origin, settings in data["upstreams"].items()
        ]
    lines += ["", "Warnings:" if data["warnings"] else "Warnings: none"]
    lines += [f"  - {warning}" for warning in data["warnings"]]
    lines += ["", f"Not seen: {data['not_seen']}."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """``wsgi-pool``: the command line."""
    parser = argparse.ArgumentParser(prog="wsgi-pool", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser(
        "explain",
        help="the pool settings a gunicorn configuration gives each worker, and why",
        description="Any other argument is gunicorn's (-c FILE, --workers, --threads, -k, ...).",
    )
    command.add_argument("--json", action="store_true", help="print JSON instead of text")
    args, gunicorn_args = parser.parse_known_args(argv)
    stream = sys.stdout if out is None else out
    if importlib.util.find_spec("gunicorn") is None:
        print(
            "wsgi-pool explain: reads a gunicorn configuration, and gunicorn is not installed: "
            "pip install 'wsgi_pool[gunicorn]'",
            file=sys.stderr,
        )
        return 2
    try:
        found = explain(gunicorn_args)
    except ConfigError as exc:
        print(f"wsgi-pool explain: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(found.as_dict(), stream, indent=2)
        stream.write("\n")
    else:
        stream.write(render(found) + "\n")
    return 0
