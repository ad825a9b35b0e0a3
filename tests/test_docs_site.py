"""The documentation site builds with ``mkdocs build --strict``: no broken link or anchor, no
page left out of the navigation, and the root files its pages include are found."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT

# Built page (under the site directory) -> a text it must hold, from the page or from the root
# file it includes.
KEY_PAGES = {
    "index.html": "the two commands",
    "concepts/index.html": "What the request-scoped client guarantees",
    "concepts/resilience/index.html": "A failing address is ejected",
    "guides/gunicorn/index.html": "The hooks",
    "guides/flask/index.html": "WsgiPool",
    "guides/django/index.html": "ClientMiddleware",
    "guides/migrating/index.html": "From thread-local sessions",
    "guides/observability/index.html": "OpenTelemetry",
    "mesh/index.html": "Behind a service mesh",
    "reference/settings/index.html": "WSGI_POOL_MAX_CONNECTION_AGE",
    "reference/errors/index.html": "UpstreamReset",
    "reference/metrics/index.html": "wsgi_pool_retries_total",
    "reference/cli/index.html": "wsgi-pool explain",
    "security/index.html": "Reporting a problem",  # SECURITY.md
    "changelog/index.html": "Keep a Changelog",  # CHANGELOG.md
    "architecture/index.html": "One GET, step by step",  # ARCHITECTURE.md
    "performance/index.html": "The wire benchmark",
    "supported-versions/index.html": "requests&gt;=2.32.4",
}


class _AnyTag(yaml.SafeLoader):
    """mkdocs.yml with its ``!relative`` tags read as plain values."""


_AnyTag.add_multi_constructor("!", lambda loader, suffix, node: None)


def mkdocs_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_AnyTag)  # noqa: S506  (a safe loader)
    return config


def nav_pages(nav: Any) -> list[str]:
    """The Markdown files the navigation lists, in order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built by this interpreter's mkdocs in strict mode (any warning fails it)."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "WARNING" not in done.stderr, done.stderr[-4000:]
    return out


def test_the_site_builds_strictly_with_its_key_pages(site: Path) -> None:
    missing = [page for page in KEY_PAGES if not (site / page).is_file()]
    assert missing == []
    for page, text in KEY_PAGES.items():
        assert text in (site / page).read_text(), page


def test_every_page_is_in_the_navigation_and_built(site: Path) -> None:
    """Each Markdown file of docs/ is listed once in mkdocs.yml's nav, and built."""
    docs = ROOT / "docs"
    pages = sorted(path.relative_to(docs).as_posix() for path in docs.rglob("*.md"))
    listed = nav_pages(mkdocs_config()["nav"])
    assert sorted(listed) == pages
    assert len(listed) == len(set(listed))
    for page in pages:
        built = "index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html"
        built = built.replace("/index/index.html", "/index.html")
        assert (site / built).is_file(), page


def test_the_config_is_strict_material_and_includes_checked_root_files() -> None:
    """strict, the Material theme, docs/ as the pages; the root files included by the security,
    changelog and architecture pages, with a missing one an error."""
    config = mkdocs_config()
    assert config["strict"] is True
    assert config["theme"]["name"] == "material"
    assert config["docs_dir"] == "docs"
    assert set(config["validation"].values()) == {"warn"}  # every broken link fails --strict
    (snippets,) = [
        item["pymdownx.snippets"]
        for item in config["markdown_extensions"]
        if isinstance(item, dict) and "pymdownx.snippets" in item
    ]
    assert snippets["check_paths"] is True
    includes = {
        page: (ROOT / "docs" / page).read_text().strip()
        for page in ("security.md", "changelog.md", "architecture.md")
    }
    assert includes["security.md"].startswith('--8<-- "SECURITY.md"')
    assert includes["changelog.md"] == '--8<-- "CHANGELOG.md"'
    assert includes["architecture.md"] == '--8<-- "ARCHITECTURE.md"'
