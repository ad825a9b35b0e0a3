"""The package as users get it: the sdist holds the whole test suite and what it reads, the
wheel every module, both the licence, and the metadata what the package index shows."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.support import ROOT

REPOSITORY = "https://github.com/wsgi-pool/wsgi_pool"
# What a working copy holds besides the project: never in the sdist.
NOT_THE_PROJECT = (".git", ".venv", ".venv-demo", ".mypy_cache", ".ruff_cache", ".pytest_cache")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, built from a copy of the working tree (not in place: a build writes the
    egg-info and a release tree next to pyproject.toml), with a virtual environment, caches
    and a git directory planted in the copy for the manifest to leave out."""
    work = tmp_path_factory.mktemp("sdist")
    source = work / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(*NOT_THE_PROJECT, "*.egg-info", "build", "dist"),
    )
    for planted in (".venv/lib/site.py", ".git/config", "tests/__pycache__/x.cpython-311.pyc"):
        (source / planted).parent.mkdir(parents=True, exist_ok=True)
        (source / planted).write_text("")
    out = work / "dist"
    if importlib.util.find_spec("build") is not None:
        command = [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out)]
    else:
        command = [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])",
            str(out),
        ]
    subprocess.run(command, cwd=source, check=True, timeout=120, capture_output=True)
    (archive,) = out.glob("wsgi_pool-*.tar.gz")
    return archive


def sdist_names(archive: Path) -> set[str]:
    """The sdist's paths, without the ``wsgi_pool-<version>/`` every one starts with."""
    with tarfile.open(archive) as tar:
        return {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}


def test_the_sdist_ships_the_licence_and_the_whole_test_suite(sdist: Path) -> None:
    """``pytest`` runs from an unpacked sdist: every file of tests/ (the helpers they import
    included) and what the tests read are there; a working copy's clutter is not."""
    names = sdist_names(sdist)
    assert "LICENSE" in names
    tests = {path.relative_to(ROOT).as_posix() for path in (ROOT / "tests").glob("*.py")}
    assert {"tests/conftest.py", "tests/support.py", "tests/__init__.py"} <= tests
    assert sorted(tests - names) == []
    read_by_the_tests = {
        "README.md",
        "SECURITY.md",
        "ARCHITECTURE.md",
        "CHANGELOG.md",
        "docs/mesh.md",
        "mkdocs.yml",
        "deploy/monitoring/alerts.yaml",
        "deploy/monitoring/grafana-dashboard.json",
        ".ci/run",
        "dev",
        "deploy/gunicorn.conf.py",
        "deploy/kubernetes.yaml",
        "deploy/Dockerfile",
        "deploy/wsgi_pool.service",
        "examples/demo.py",
        "examples/plain_wsgi.py",
        "benchmarks/wire.py",
    }
    assert sorted(read_by_the_tests - names) == []
    clutter = sorted(
        name
        for name in names
        if {*NOT_THE_PROJECT, "__pycache__"} & set(name.split("/")) or name.endswith(".pyc")
    )
    assert clutter == []


def test_the_wheel_ships_every_module_and_the_licence(sdist: Path, tmp_path: Path) -> None:
    """Built from the sdist, as pip builds it where no wheel fits (the tests use an editable
    install, which would hide a subpackage the wheel leaves out)."""
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (source,) = tmp_path.glob("wsgi_pool-*")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        timeout=120,
    )
    (wheel,) = (tmp_path / "dist").glob("wsgi_pool-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_path,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_path).decode()
    shipped = {name for name in names if name.startswith("wsgi_pool/")}
    expected = {
        path.relative_to(source).as_posix()
        for path in (source / "wsgi_pool").rglob("*")
        if path.is_file() and (path.suffix == ".py" or path.name == "py.typed")
    }
    assert "wsgi_pool/_fast/seams.py" in expected
    assert shipped == expected
    dist_info = metadata_path.removesuffix("METADATA")
    assert f"{dist_info}licenses/LICENSE" in names
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "Classifier: Programming Language :: Python :: 3.13" in metadata.splitlines()
    urls = dict(
        line.removeprefix("Project-URL: ").split(", ", 1)
        for line in metadata.splitlines()
        if line.startswith("Project-URL: ")
    )
    assert set(urls) >= {"Homepage", "Documentation", "Repository", "Issues", "Changelog"}
    assert urls["Security"] == f"{REPOSITORY}/security/advisories/new"
    assert all(url.startswith(REPOSITORY) for url in urls.values())
    # Development tools are a dependency group (PEP 735), never an extra users can install.
    assert "Provides-Extra: dev" not in metadata.splitlines()


def test_the_readme_links_work_on_the_package_index() -> None:
    """The index shows the README without the repository around it: a link is absolute, or
    an anchor within the README; a link into the repository names a file it holds."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme) + re.findall(
        r"^\s*\[[^\]]+\]:\s*(\S+)", readme, flags=re.MULTILINE
    )
    assert targets
    relative = [t for t in targets if not t.startswith(("https://", "http://", "mailto:", "#"))]
    assert relative == []
    into_the_repository = [
        re.sub(rf"^{re.escape(REPOSITORY)}/(blob|tree)/main/", "", t)
        for t in targets
        if re.match(rf"{re.escape(REPOSITORY)}/(blob|tree)/main/", t)
    ]
    assert "deploy/gunicorn.conf.py" in into_the_repository
    assert [path for path in into_the_repository if not (ROOT / path).exists()] == []
