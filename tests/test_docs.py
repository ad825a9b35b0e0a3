"""The docs cannot drift: every README snippet runs, and the tables match the code."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from collections.abc import Callable
from typing import Any

import certifi
import pytest
import requests.api

import wsgi_pool
from tests.support import ROOT
from tests.support import wsgi_call as call
from wsgi_pool import PoolConfig
from wsgi_pool._env import ENV_PREFIX
from wsgi_pool.testing import Upstream

REQUESTS_OWN = requests.api.request

pytestmark = pytest.mark.usefixtures("django_settings")


README = (ROOT / "README.md").read_text()
SNIPPETS = [
    textwrap.dedent(code) for code in re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
]


def snippet_label(code: str) -> str:
    first = code.lstrip().splitlines()[0]
    return first.removeprefix("#").strip()


def check_app(namespace: dict[str, Any], upstream: Upstream) -> None:
    status, body, _ = call(namespace["app"])
    assert (status, body) == ("200 OK", b"item 42 from /items/42")


def check_gunicorn_conf(namespace: dict[str, Any], upstream: Upstream) -> None:
    from gunicorn.config import Config  # noqa: PLC0415

    cfg = Config()
    from wsgi_pool import gunicorn as hooks  # noqa: PLC0415

    for name in (*hooks.__all__, "workers", "worker_class", "threads"):  # every hook we ship
        cfg.set(name, namespace[name])
    assert PoolConfig.from_gunicorn(cfg, environ={}).threads == 16


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


def check_testing_with_responses(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert namespace["item"] == {"id": 42}
    assert upstream.stats().connections_opened == 0  # the mock answered


def check_testing_with_an_upstream(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert namespace["body"] == b"item 42 from canned"
    assert namespace["sent"].path == "/items/42"
    assert upstream.stats().requests_served == 0  # the snippet's own upstream was called


def check_config_in_code(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert namespace["app"].config == PoolConfig(read_timeout=5.0, pool_timeout=1.0)


def check_deadlines(namespace: dict[str, Any], upstream: Upstream) -> None:
    assert upstream.stats().requests_served == 2


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
    assert (settings.propagate, settings.ca_bundle) == (True, namespace["CA_FILE"])
    assert config.for_upstream(upstream.url).propagate is False
    with pytest.raises(wsgi_pool.EgressDenied):  # 127.0.0.1 is not globally routable
        wsgi_pool.client(config).get(f"{upstream.url}/x")


def check_resilience(namespace: dict[str, Any], upstream: Upstream) -> None:
    config = namespace["config"]
    assert (config.max_connection_age, config.max_pending) == (30.0, 8)
    billing = config.for_upstream("http://billing.internal:80")
    assert (billing.idle_timeout, billing.max_connection_age) == (1.5, 30.0)


CHECKS: dict[str, Callable[[dict[str, Any], Upstream], None]] = {
    "app.py": check_app,
    "gunicorn.conf.py": check_gunicorn_conf,
    "flask": check_flask,
    "django view": check_django_view,
    "outside a request": check_outside_a_request,
    "sdk sessions": check_sdk_sessions,
    "patch requests": check_patch_requests,
    "trust boundaries": check_trust_boundaries,
    "deadlines": check_deadlines,
    "resilience": check_resilience,
    "http cache": check_http_cache,
    "config in code": check_config_in_code,
    "pool stats": check_pool_stats,
    "testing with responses": check_testing_with_responses,
    "testing with an upstream": check_testing_with_an_upstream,
}


MESH = (ROOT / "docs" / "mesh.md").read_text()


def test_the_mesh_page_snippet_runs(upstream: Upstream) -> None:
    """docs/mesh.md's configuration makes calls that tell the sidecar the time left."""
    (code,) = re.findall(r"```python\n(.*?)```", MESH, flags=re.DOTALL)
    assert snippet_label(code) == "mesh"
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102
    with wsgi_pool.client(namespace["config"]) as http:
        http.get(f"{upstream.url}/x").raise_for_status()
    assert 0 < int(upstream.seen("/x")[0].headers["x-envoy-upstream-rq-timeout-ms"]) <= 5000


def test_every_snippet_has_a_check() -> None:
    """Each README Python snippet is labelled by its first comment, and each label has a check."""
    assert [snippet_label(code) for code in SNIPPETS] == list(CHECKS)


@pytest.mark.parametrize("label", list(CHECKS))
def test_readme_snippet_runs(
    label: str, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README snippet runs as written against a real upstream (the view from app.py is in scope)."""
    monkeypatch.setenv("INVENTORY_URL", upstream.url)
    namespace: dict[str, Any] = {"__name__": "readme_snippet", "CA_FILE": certifi.where()}
    exec(SNIPPETS[0], namespace)  # noqa: S102  (the README's own app.py, which later snippets build on)
    code = {snippet_label(c): c for c in SNIPPETS}[label]
    exec(code, namespace)  # noqa: S102
    CHECKS[label](namespace, upstream)


def test_config_table_matches_the_fields() -> None:
    """The README's configuration table lists every field, its variable and its default."""
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| `([^`]*)` \|", README, flags=re.MULTILINE)
    fields = dataclasses.fields(PoolConfig)
    assert [name for name, _, _ in rows] == [f.name for f in fields]
    for (name, variable, default), field in zip(rows, fields, strict=True):
        assert variable == ENV_PREFIX + name.upper()
        factory = field.default_factory
        value = factory() if callable(factory) else field.default
        assert default == repr(value)
        assert field.metadata["doc"]


def test_the_two_commands_and_ci_agree() -> None:
    """The README's two commands exist, and .ci/run runs exactly the README's test command."""
    assert "./dev demo" in README
    assert "./dev test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if line and not line.startswith("#")][
        -1
    ] == "exec ./dev test"


def test_changelog_follows_keep_a_changelog() -> None:
    """CHANGELOG.md has an Unreleased section and a section for the package's version."""
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert re.search(
        rf"^## \[{re.escape(wsgi_pool.__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$",
        changelog,
        flags=re.MULTILINE,
    )


def test_the_explain_output_in_the_readme_is_the_commands() -> None:
    """The README's ``wsgi-pool explain`` example is what the command prints for deploy/."""
    from wsgi_pool._explain import explain, render  # noqa: PLC0415

    command = "$ wsgi-pool explain -c deploy/gunicorn.conf.py\n"
    shown = README.split(command, 1)[1].split("```", 1)[0]
    conf = str(ROOT / "deploy" / "gunicorn.conf.py")
    assert shown == render(explain(["-c", conf], {})) + "\n"


def test_every_file_the_docs_name_exists() -> None:
    """A path in the README, SECURITY.md or ARCHITECTURE.md (a test, an example, a deploy file)
    names a file of this repository."""
    named = {
        path
        for page in ("README.md", "SECURITY.md", "ARCHITECTURE.md")
        for path in re.findall(
            r"`((?:tests|examples|deploy|benchmarks|wsgi_pool)/[\w./-]+)`",
            (ROOT / page).read_text(),
        )
    }
    assert "tests/test_compat.py" in named
    assert [path for path in sorted(named) if not (ROOT / path).exists()] == []
