"""The docs cannot drift: every ```python snippet of the README and of docs/ runs with a check
of what it did, and the reference pages (settings, errors, metrics, the CLI) match the code."""

from __future__ import annotations

import dataclasses
import os
import re
import textwrap
import threading
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

import certifi
import pytest
import requests.api

import wsgi_pool
from tests.support import ROOT
from tests.support import wsgi_call as call
from wsgi_pool import PoolConfig, UpstreamSettings, size_pools
from wsgi_pool._env import ENV_PREFIX
from wsgi_pool._stats import BUCKETS, UpstreamSnapshot
from wsgi_pool.testing import Upstream

REQUESTS_OWN = requests.api.request
REPOSITORY = "https://github.com/wsgi-pool/wsgi_pool"

pytestmark = pytest.mark.usefixtures("django_settings")


def read(page: str) -> str:
    return (ROOT / page).read_text()


# Every page whose snippets run: the README (the package's long description) and the site.
PAGES = {
    "README.md": read("README.md"),
    **{
        path.relative_to(ROOT).as_posix(): path.read_text()
        for path in sorted((ROOT / "docs").rglob("*.md"))
    },
}
README = PAGES["README.md"]


class Snippet(NamedTuple):
    page: str
    label: str
    code: str


def snippet_label(code: str) -> str:
    """A snippet's label: its first line, a comment."""
    first = code.lstrip().splitlines()[0]
    return first.removeprefix("#").strip()


SNIPPETS = [
    Snippet(page, snippet_label(code), code)
    for page, text in PAGES.items()
    for code in (
        textwrap.dedent(found)
        for found in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    )
]
APP = next(snippet.code for snippet in SNIPPETS if snippet.label == "app.py")
"""The gunicorn guide's app, run before every snippet: later snippets use its ``view``."""


def section(page: str, heading: str) -> str:
    """The text of ``page`` under ``heading``, up to the next heading of its level or above."""
    text = PAGES[page]
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    end = re.search(rf"^#{{1,{level}}} ", text[start:], flags=re.MULTILINE)
    return text[start:] if end is None else text[start : start + end.start()]


def table(text: str, columns: int) -> list[list[str]]:
    """The body rows of the Markdown tables in ``text`` that have ``columns`` columns."""
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("|---")
    ]
    return [row for row in rows if len(row) == columns][1:]


def code_names(cell: str) -> list[str]:
    """The names in backticks in a table cell: `upstream`, `reason` -> ["upstream", "reason"]."""
    return re.findall(r"`([^`]+)`", cell)


# The checks: what each snippet must have done, by label. A snippet whose label has no check
# fails the suite, so a new snippet comes with its check.


def point_at(namespace: dict[str, Any], upstream: Upstream) -> None:
    """A quickstart calls http://inventory.internal: its views read INVENTORY when called."""
    namespace["INVENTORY"] = upstream.url
    upstream.answer("/items/42", json={"id": 42})


def check_quickstart_app(namespace: dict[str, Any], upstream: Upstream) -> None:
    point_at(namespace, upstream)
    status, body, _ = call(namespace["app"])
    assert (status, body) == ("200 OK", b"item 42")


def check_quickstart_gunicorn_conf(namespace: dict[str, Any], upstream: Upstream) -> None:
    from wsgi_pool import gunicorn as hooks  # noqa: PLC0415

    assert all(namespace[name] is getattr(hooks, name) for name in hooks.__all__)
    check_gunicorn_conf(namespace, upstream)


def check_quickstart_flask(namespace: dict[str, Any], upstream: Upstream) -> None:
    point_at(namespace, upstream)
    assert namespace["app"].test_client().get("/item").get_json() == {"id": 42}


def check_quickstart_django(namespace: dict[str, Any], upstream: Upstream) -> None:
    from django.test import RequestFactory  # noqa: PLC0415
    from django.utils.module_loading import import_string  # noqa: PLC0415

    from wsgi_pool.django import ClientMiddleware, WsgiPoolAppConfig  # noqa: PLC0415

    assert [import_string(path) for path in namespace["INSTALLED_APPS"]] == [WsgiPoolAppConfig]
    assert [import_string(path) for path in namespace["MIDDLEWARE"]] == [ClientMiddleware]
    point_at(namespace, upstream)
    response = ClientMiddleware(namespace["item"])(RequestFactory().get("/item"))
    assert b'"id": 42' in response.content


def check_app(namespace: dict[str, Any], upstream: Upstream) -> None:
    status, body, _ = call(namespace["app"])
    assert (status, body) == ("200 OK", b"item 42 from /items/42")


def gunicorn_config(namespace: dict[str, Any], names: tuple[str, ...]) -> Any:
    from gunicorn.config import Config  # noqa: PLC0415

    cfg = Config()
    for name in names:
        cfg.set(name, namespace[name])
    return cfg


def check_gunicorn_conf(namespace: dict[str, Any], upstream: Upstream) -> None:
    from wsgi_pool import gunicorn as hooks  # noqa: PLC0415

    names = (*hooks.__all__, "workers", "worker_class", "threads")  # every hook we ship
    cfg = gunicorn_config(namespace, names)
    assert PoolConfig.from_gunicorn(cfg, environ={}).threads == 16


def check_your_own_hook(namespace: dict[str, Any], upstream: Upstream) -> None:
    from gunicorn.config import Config  # noqa: PLC0415

    from wsgi_pool import _process  # noqa: PLC0415
    from wsgi_pool import gunicorn as hooks  # noqa: PLC0415
    from wsgi_pool._explain import calls  # noqa: PLC0415

    cfg = Config()
    cfg.set("worker_class", "gthread")
    cfg.set("threads", 4)
    ran = set(_process._hooks_ran)
    try:
        namespace["post_fork"](None, SimpleNamespace(cfg=cfg, pid=os.getpid()))
    finally:  # which hooks ran is process state the other tests read: as it was
        _process._hooks_ran.clear()
        _process._hooks_ran.update(ran)
    assert namespace["started"] == [os.getpid()]
    assert _process.server_known()  # ours ran: the worker's concurrency is recorded
    assert calls(namespace["post_fork"], hooks.post_fork, hooks)  # and explain sees it called


def check_sizing(namespace: dict[str, Any], upstream: Upstream) -> None:
    sizing = namespace["sizing"]
    assert sizing.pool_maxsize == 16
    assert sizing.reasons["pool_maxsize"] == "gthread worker with 16 threads"


def check_fleet_budget(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert size_pools(namespace["config"]).pool_maxsize == 1


def check_flask(namespace: dict[str, Any], upstream: Upstream) -> None:
    answer = namespace["app"].test_client().get("/item").get_json()
    assert answer["path"] == "/items/42"


def check_django_view(namespace: dict[str, Any], upstream: Upstream) -> None:
    from django.test import RequestFactory  # noqa: PLC0415

    from wsgi_pool.django import ClientMiddleware  # noqa: PLC0415

    request = RequestFactory().get("/item")
    response = ClientMiddleware(namespace["item"])(request)
    assert b'"path": "/items/42"' in response.content


def check_outside_a_request(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert upstream.stats().requests_served == 1


def check_sdk_sessions(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert namespace["rows"]["cookie"] == "session=abc"
    assert namespace["charge"]["headers"]["Authorization"] == "Bearer sk_test_123"
    assert namespace["bucket"]["headers"]["authorization"] == "Bearer ya29.example"
    assert upstream.stats().requests_served == 4
    # Every call went through this process's pools, which counted them.
    assert wsgi_pool.client().pools.stats()[upstream.url].calls == 4
    for name in ("database", "payments", "cloud"):
        namespace[name].close()


def check_patch_requests(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert namespace["item"]["path"] == "/items/42"
    assert wsgi_pool.client().pools.stats()[upstream.url].calls == 1
    assert requests.api.request is REQUESTS_OWN  # unpatched again


def check_from_a_module_level_session(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert isinstance(namespace["SESSION"], wsgi_pool.Client)
    assert namespace["stock"](42)["path"] == "/items/42"
    upstream.answer("/login", headers={"Set-Cookie": "user=alice"})
    namespace["SESSION"].get(f"{upstream.url}/login")
    assert namespace["stock"](42)["cookie"] is None  # no user's cookie kept
    assert namespace["SESSION"].pools.stats()[upstream.url].calls == 3


def check_from_thread_local_sessions(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert namespace["price"]["path"] == "/prices/42"
    seen: list[int] = []

    def in_a_thread() -> None:
        seen.append(namespace["session"]().get(f"{upstream.url}/x").json()["connection"])

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(10)
    in_a_thread()
    # Another thread's call reused the worker's one kept connection: the pools are shared.
    assert upstream.stats().connections_opened == 1
    assert len(set(seen)) == 1


def check_testing_with_responses(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert namespace["item"] == {"id": 42}
    assert upstream.stats().connections_opened == 0  # the mock answered


def check_testing_with_an_upstream(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert namespace["body"] == b"item 42 from canned"
    assert namespace["sent"].path == "/items/42"
    assert upstream.stats().requests_served == 0  # the snippet's own upstream was called


def check_config_in_code(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert namespace["app"].config == PoolConfig(read_timeout=5.0, pool_timeout=1.0)


def check_config_from_the_environment(namespace: dict[str, Any], upstream: Upstream) -> None:
    config = namespace["config"]
    assert (config.read_timeout, config.retry_statuses) == (5.0, frozenset({503}))
    assert namespace["message"] == (
        "WSGI_POOL_READ_TIMEUOT='5': unknown setting; did you mean WSGI_POOL_READ_TIMEOUT?"
    )


def check_catching_errors(namespace: dict[str, Any], upstream: Upstream) -> None:
    failed = namespace["failed"]
    assert isinstance(failed, wsgi_pool.EgressDenied)
    assert failed.upstream == upstream.url
    assert upstream.stats().connections_opened == 0  # nothing was sent


def check_deadlines(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert upstream.stats().requests_served == 2


def check_timings(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert namespace["INVENTORY"] == upstream.url
    spent = namespace["spent"]
    assert isinstance(spent, wsgi_pool.Timings)
    assert (spent.tries, spent.tls) == (1, None)
    assert spent.first_byte is not None


def check_http_cache(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert namespace["app"].config.http_cache_bytes == 16 * 1024 * 1024
    assert upstream.stats().requests_served == 1  # the second GET came from the cache


def check_pool_stats(namespace: dict[str, Any], upstream: Upstream) -> None:
    found = namespace["found"]
    assert (found.calls, found.opened, found.reused, found.idle) == (2, 1, 1, 1)
    assert upstream.stats().connections_opened == 1


def check_trust_boundaries(namespace: dict[str, Any], upstream: Upstream) -> None:
    config = namespace["config"]
    settings = config.for_upstream("https://inventory.internal:443")
    assert (settings.propagate, settings.ca_bundle) == (True, certifi.where())
    assert config.for_upstream(upstream.url).propagate is False
    with pytest.raises(wsgi_pool.EgressDenied):  # 127.0.0.1 is not globally routable
        wsgi_pool.client(config).get(f"{upstream.url}/x")


def check_resilience(namespace: dict[str, Any], upstream: Upstream) -> None:
    config = namespace["config"]
    assert (config.max_connection_age, config.max_pending) == (30.0, 8)
    billing = config.for_upstream("http://billing.internal:80")
    assert (billing.idle_timeout, billing.max_connection_age) == (1.5, 30.0)


def check_mesh(namespace: dict[str, Any], upstream: Upstream) -> None:
    """docs/mesh.md's configuration makes calls that tell the sidecar the time left."""
    with wsgi_pool.client(namespace["config"]) as http:
        http.get(f"{upstream.url}/x").raise_for_status()
    assert 0 < int(upstream.seen("/x")[0].headers["x-envoy-upstream-rq-timeout-ms"]) <= 5000


CHECKS: dict[str, Callable[[dict[str, Any], Upstream], None]] = {
    # README.md
    "quickstart: app.py": check_quickstart_app,
    "quickstart: gunicorn.conf.py": check_quickstart_gunicorn_conf,
    "quickstart: flask": check_quickstart_flask,
    "quickstart: django": check_quickstart_django,
    # docs/
    "outside a request": check_outside_a_request,
    "sizing": check_sizing,
    "fleet budget": check_fleet_budget,
    "deadlines": check_deadlines,
    "timings": check_timings,
    "resilience": check_resilience,
    "http cache": check_http_cache,
    "app.py": check_app,
    "gunicorn.conf.py": check_gunicorn_conf,
    "your own hook": check_your_own_hook,
    "flask": check_flask,
    "django view": check_django_view,
    "patch requests": check_patch_requests,
    "from a module-level session": check_from_a_module_level_session,
    "from thread-local sessions": check_from_thread_local_sessions,
    "sdk sessions": check_sdk_sessions,
    "testing with responses": check_testing_with_responses,
    "testing with an upstream": check_testing_with_an_upstream,
    "mesh": check_mesh,
    "pool stats": check_pool_stats,
    "config in code": check_config_in_code,
    "config from the environment": check_config_from_the_environment,
    "catching errors": check_catching_errors,
    "trust boundaries": check_trust_boundaries,
}


def test_every_snippet_has_a_check() -> None:
    """Each Python snippet is labelled by its first comment, no two alike, and each label has a
    check (and each check a snippet)."""
    labels = [snippet.label for snippet in SNIPPETS]
    assert [label for label, count in Counter(labels).items() if count > 1] == []
    assert sorted(set(labels) - set(CHECKS)) == [], "snippets without a check in CHECKS"
    assert sorted(set(CHECKS) - set(labels)) == [], "checks of snippets no page has"
    assert {snippet.page for snippet in SNIPPETS} >= {"README.md", "docs/mesh.md"}


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"{s.page}:{s.label}" for s in SNIPPETS])
def test_snippet_runs(
    snippet: Snippet, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snippet runs as written against a real upstream (the gunicorn guide's app.py, which
    later snippets build on, runs first), then its check holds."""
    check = CHECKS.get(snippet.label)
    if check is None:
        pytest.fail(f"{snippet.page}: the snippet {snippet.label!r} has no check in CHECKS")
    monkeypatch.setenv("INVENTORY_URL", upstream.url)
    monkeypatch.setenv("INVENTORY_CA_FILE", certifi.where())
    namespace: dict[str, Any] = {"__name__": "docs_snippet"}
    exec(APP, namespace)  # noqa: S102
    exec(snippet.code, namespace)  # noqa: S102
    check(namespace, upstream)


def test_the_quickstarts_are_short() -> None:
    """Each README quickstart is about ten lines: the label aside, at most ten that are not blank."""
    quickstarts = [s for s in SNIPPETS if s.page == "README.md"]
    assert [s.label for s in quickstarts] == [label for label in CHECKS if "quickstart" in label]
    for snippet in quickstarts:
        lines = [line for line in snippet.code.splitlines()[1:] if line.strip()]
        assert len(lines) <= 10, snippet.label


# The reference pages against the code.


def test_settings_table_matches_the_fields() -> None:
    """The settings page lists every PoolConfig field, in order, with its variable and default."""
    rows = table(section("docs/reference/settings.md", "## `PoolConfig`"), 4)
    fields = dataclasses.fields(PoolConfig)
    assert [code_names(row[0]) for row in rows] == [[f.name] for f in fields]
    for row, field in zip(rows, fields, strict=True):
        assert row[1] == f"`{ENV_PREFIX}{field.name.upper()}`"
        factory = field.default_factory
        value = factory() if callable(factory) else field.default
        assert row[2] == f"`{value!r}`", field.name
        assert row[3], field.name
        assert field.metadata["doc"]


def test_upstream_settings_table_matches_the_fields() -> None:
    """The settings page lists every UpstreamSettings field, in order, with its type."""
    rows = table(section("docs/reference/settings.md", "## `UpstreamSettings`"), 3)
    fields = dataclasses.fields(UpstreamSettings)
    assert [code_names(row[0]) for row in rows] == [[f.name] for f in fields]
    for row, field in zip(rows, fields, strict=True):
        (kind,) = code_names(row[1])
        assert f"{kind} | None" == field.type
        assert field.default is None


def exception_name(cls: type) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    if cls.__module__.startswith("requests"):
        return f"requests.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def test_errors_table_matches_the_exception_tree() -> None:
    """The errors page lists every public error once, with its wsgi_pool parent and the most
    specific requests or built-in exceptions it also is."""
    public = {
        name: getattr(wsgi_pool, name)
        for name in wsgi_pool.__all__
        if isinstance(getattr(wsgi_pool, name), type)
        and issubclass(getattr(wsgi_pool, name), wsgi_pool.WsgiPoolError)
    }
    rows = table(PAGES["docs/reference/errors.md"], 4)
    names = [code_names(row[0])[0] for row in rows]
    assert sorted(names) == sorted(public)
    assert len(names) == len(set(names))
    for name, parent, also, when in rows:
        cls = public[code_names(name)[0]]
        ours = [
            base.__name__ for base in cls.__bases__ if issubclass(base, wsgi_pool.WsgiPoolError)
        ]
        assert code_names(parent) == ours, name
        others = [
            base
            for base in cls.__mro__
            if not issubclass(base, wsgi_pool.WsgiPoolError)
            and base not in (Exception, BaseException, object)
        ]
        most_specific = [
            base
            for base in others
            if not any(o is not base and issubclass(o, base) for o in others)
        ]
        assert code_names(also) == [exception_name(base) for base in most_specific], name
        assert when, name


def prometheus_definitions() -> list[Any]:
    """The metric objects wsgi_pool.prometheus makes (attributes of its metrics, in dicts and
    lists too): whatever they are named, the page must name them."""
    from prometheus_client.metrics import MetricWrapperBase  # noqa: PLC0415

    from wsgi_pool import prometheus  # noqa: PLC0415

    made = prometheus._the_metrics()
    pending = [getattr(made, name) for name in dir(made) if not name.startswith("__")]
    found: list[Any] = []
    while pending:
        value = pending.pop()
        if isinstance(value, MetricWrapperBase):
            found.append(value)
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)
    assert found, "no metric found in wsgi_pool.prometheus"
    return found


def exposed_name(metric: Any) -> str:
    """A metric's name in the exposition: a counter's with ``_total``."""
    return str(metric._name) + ("_total" if metric._type == "counter" else "")


def prometheus_metrics() -> dict[str, tuple[str, list[str]]]:
    """Every Prometheus metric the code defines, by exposed name: its type and labels."""
    return {
        exposed_name(metric): (str(metric._type), list(metric._labelnames))
        for metric in prometheus_definitions()
    }


def series_names() -> set[str]:
    """The names the exposition has: a histogram's ``_bucket``, ``_sum`` and ``_count`` too."""
    names = set()
    for name, (kind, _) in prometheus_metrics().items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        names.add(name)
    return names


def test_prometheus_table_matches_the_code() -> None:
    """The metrics page lists every Prometheus metric the code defines, with its type and
    labels, and a meaning; no other."""
    rows = table(section("docs/reference/metrics.md", "## Prometheus metrics"), 4)
    documented = {code_names(name)[0]: (kind, code_names(labels)) for name, kind, labels, _ in rows}
    assert len(documented) == len(rows), "a metric is listed twice"
    assert documented == prometheus_metrics()
    assert all(meaning for *_, meaning in rows)


def test_the_histograms_buckets_are_on_the_metrics_page() -> None:
    page = section("docs/reference/metrics.md", "## Prometheus metrics")
    stated = {
        name: tuple(float(bucket) for bucket in buckets.split(", "))
        for name, buckets in re.findall(
            r"^Buckets of `(\w+)` \(seconds[^)]*\):\n([\d., ]+)\.$", page, flags=re.MULTILINE
        )
    }
    histograms = {
        exposed_name(metric): tuple(metric._upper_bounds[:-1])  # the last is +Inf
        for metric in prometheus_definitions()
        if metric._type == "histogram"
    }
    assert stated == histograms
    assert histograms["http_client_request_duration_seconds"] == BUCKETS


class _Meter:
    """A meter that only notes the instruments made on it: (name, kind, unit)."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str, str]] = []

    def __getattr__(self, method: str) -> Callable[..., None]:
        kind = method.removeprefix("create_").replace("_", " ").replace("up down", "up-down")

        def create(name: str, *args: Any, unit: str = "", **kwargs: Any) -> None:
            self.made.append((name, kind, unit))

        return create


def test_opentelemetry_table_matches_the_code() -> None:
    """The metrics page lists every OpenTelemetry instrument the code makes, with its kind
    and unit, and a meaning; no other."""
    from wsgi_pool import _otel  # noqa: PLC0415

    meter = _Meter()
    _otel._Instruments(meter)
    assert meter.made
    rows = table(section("docs/reference/metrics.md", "## OpenTelemetry metrics"), 4)
    documented = sorted(
        (code_names(name)[0], kind, code_names(unit)[0]) for name, kind, unit, _ in rows
    )
    assert documented == sorted(meter.made)
    assert all(meaning for *_, meaning in rows)


def test_statistics_table_matches_the_snapshot() -> None:
    """The metrics page lists every field of ``stats()``'s UpstreamSnapshot, in order."""
    rows = table(section("docs/reference/metrics.md", "## Statistics in the process"), 2)
    assert [code_names(row[0]) for row in rows] == [
        [field.name] for field in dataclasses.fields(UpstreamSnapshot)
    ]


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
PROMQL_WORDS |= {"and", "or", "unless", "offset"}


def promql_metric_names(query: str) -> set[str]:
    """The metric names a PromQL text selects (not functions, keywords or label names)."""
    query = re.sub(r"#.*", "", query)
    query = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", query)
    query = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", query)
    found = set(re.findall(r"\b([A-Za-z_:][\w:]*)\b(?!\s*\()", query))
    return found - PROMQL_WORDS


def test_every_metric_name_in_the_docs_exists() -> None:
    """A metric named in a PromQL example, or in backticks (``wsgi_pool_...``,
    ``http_client_...``), is one the code exposes: a renamed metric leaves no stale name or
    query behind."""
    exposed = series_names()
    named: set[str] = set()
    for text in PAGES.values():
        for query in re.findall(r"```promql\n(.*?)```", text, flags=re.DOTALL):
            named |= promql_metric_names(query)
        prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
        spans = re.findall(r"`([^`\n]+)`", prose)
        named |= {span for span in spans if re.fullmatch(r"(wsgi_pool|http_client)_\w+", span)}
    assert "http_client_request_duration_seconds_bucket" in named
    assert sorted(named - exposed) == []


def test_gunicorn_hooks_table_lists_every_hook() -> None:
    from wsgi_pool import gunicorn as hooks  # noqa: PLC0415

    rows = table(section("docs/guides/gunicorn.md", "## The hooks"), 3)
    assert sorted(code_names(row[0])[0] for row in rows) == sorted(hooks.__all__)


def test_the_explain_output_on_the_cli_page_is_the_commands() -> None:
    """The CLI page's ``wsgi-pool explain`` example is what the command prints for deploy/,
    and its ``--json`` keys are the command's."""
    from wsgi_pool._explain import explain, render  # noqa: PLC0415

    page = PAGES["docs/reference/cli.md"]
    command = "$ wsgi-pool explain -c deploy/gunicorn.conf.py\n"
    shown = page.split(command, 1)[1].split("```", 1)[0]
    found = explain(["-c", str(ROOT / "deploy" / "gunicorn.conf.py")], {})
    assert shown == render(found) + "\n"
    keys = [
        code_names(row[0])[0] for row in table(section("docs/reference/cli.md", "## `--json`"), 2)
    ]
    assert keys == list(found.as_dict())


def test_supported_versions_are_the_packages() -> None:
    """The supported versions page says what pyproject.toml says: the Python versions of its
    classifiers, and each minimum version as pinned there."""
    pyproject = read("pyproject.toml")
    page = PAGES["docs/supported-versions.md"]
    pythons = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', pyproject)
    said = section("docs/supported-versions.md", "## Python")
    assert re.findall(r"3\.\d+", said) == pythons
    pins = re.findall(r"`([\w.\[\]-]+>=[\w.]+)`", page)
    assert "requests>=2.32.4" in pins
    assert [pin for pin in pins if f'"{pin}"' not in pyproject] == []


def test_the_two_commands_and_ci_agree() -> None:
    """The README's two commands exist, and .ci/run runs exactly the README's test command."""
    assert "./dev demo" in README
    assert "./dev test" in README
    ci = read(".ci/run")
    assert [line for line in ci.splitlines() if line and not line.startswith("#")][
        -1
    ] == "exec ./dev test"


def test_changelog_follows_keep_a_changelog() -> None:
    """CHANGELOG.md has an Unreleased section and a section for the package's version."""
    changelog = read("CHANGELOG.md")
    assert "## [Unreleased]" in changelog
    assert re.search(
        rf"^## \[{re.escape(wsgi_pool.__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$",
        changelog,
        flags=re.MULTILINE,
    )


def test_every_file_the_docs_name_exists() -> None:
    """A path in the README, the site's pages, SECURITY.md or ARCHITECTURE.md (a test, an
    example, a deploy file) names a file of this repository."""
    texts = [*PAGES.values(), read("SECURITY.md"), read("ARCHITECTURE.md")]
    named = {
        path
        for text in texts
        for path in re.findall(r"`((?:tests|examples|deploy|benchmarks|wsgi_pool)/[\w./-]+)`", text)
    }
    assert "tests/test_compat.py" in named
    assert [path for path in sorted(named) if not (ROOT / path).exists()] == []


def test_every_repository_link_names_a_file() -> None:
    """A link into the repository (the site's pages link to code that way) names a file or
    directory it holds."""
    links = [
        path
        for text in PAGES.values()
        for path in re.findall(rf"\]\({re.escape(REPOSITORY)}/(?:blob|tree)/main/([^)#\s]+)", text)
    ]
    assert "deploy/kubernetes.yaml" in links
    assert [path for path in sorted(set(links)) if not (ROOT / path).exists()] == []
