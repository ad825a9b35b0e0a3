"""The package as users install it: the wheel holds every module of the source tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support import ROOT


def test_the_wheel_ships_every_module(tmp_path: Path) -> None:
    """Built from a copy of what an sdist holds (the tests use an editable install, which
    would hide a subpackage the wheel leaves out)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "wsgi_pool", source / "wsgi_pool", ignore=shutil.ignore_patterns("__pycache__")
    )
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
        shipped = {name for name in archive.namelist() if name.startswith("wsgi_pool/")}
    expected = {
        path.relative_to(source).as_posix()
        for path in (source / "wsgi_pool").rglob("*")
        if path.is_file() and (path.suffix == ".py" or path.name == "py.typed")
    }
    assert "wsgi_pool/_fast/seams.py" in expected
    assert shipped == expected
