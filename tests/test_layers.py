"""The package's layers: imports run one way, down, and never in a circle (see ARCHITECTURE.md).

Every import of a wsgi_pool module counts, at module level or inside a function (a lazy
import is still a dependency). A module may import modules of its own layer or of the
layers below it; the layers, bottom first, are the table below, and every module of the
package is in it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wsgi_pool

PACKAGE = Path(wsgi_pool.__file__).parent

LAYERS: list[tuple[str, list[str]]] = [  # bottom first
    (
        "foundation",
        [
            "_errors",
            "_checks",
            "_env",
            "_servers",
            "_origins",
            "_config",
            "_sizing",
            "_policy",
            "_propagation",
            "_deadline",
            "_attempt",
            "_stats",
            "_egress",
            "_outliers",
            "_failures",
            "_translate",
            "_proxies",
        ],
    ),
    (
        "fast path",
        [
            "_fast",
            "_fast.seams",
            "_fast.headers",
            "_fast.head",
            "_fast.request",
            "_fast.exchange",
            "_fast.pools",
            "_fast.prepare",
            "_fast.whole",
            "_fast.response",
            "_fast.session",
        ],
    ),
    ("connection and response", ["_connection", "_response"]),
    ("pool", ["_pool"]),
    ("the call", ["_retry", "_call", "_redirects"]),
    ("transport adapter", ["_adapter"]),
    ("process's pools", ["_worker", "_process", "_mounted"]),
    ("client", ["_client"]),
    ("integrations", ["prometheus", "_cache", "_multiproc", "_otel"]),
    (
        "entry points",
        [
            "_integrations",
            "_middleware",
            "_patch",
            "gunicorn",
            "flask",
            "django",
            "_explain",
            "__main__",
            "testing",
            "pytest_plugin",
            "__init__",
        ],
    ),
]

LAYER_OF = {module: index for index, (_, modules) in enumerate(LAYERS) for module in modules}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The wsgi_pool modules ``path`` imports, anywhere in it, by their name in the package."""
    name = module_name(path)
    package = name.rpartition(".")[0] if path.name != "__init__.py" or name == "__init__" else name
    if name == "__init__":
        package = ""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.startswith("wsgi_pool"):
                target = node.module.removeprefix("wsgi_pool").lstrip(".")
            else:
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}" if target else alias.name
                found.add(candidate if candidate in LAYER_OF else target or "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("wsgi_pool."):
                    found.add(alias.name.removeprefix("wsgi_pool."))
    found.discard(name)
    return {module for module in found if module}


GRAPH = {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer() -> None:
    """A new module must be placed in the table: its layer says what it may import."""
    assert set(GRAPH) == set(LAYER_OF)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_go_down(module: str) -> None:
    """A module imports only its own layer and the layers below."""
    upward = {
        imported: LAYERS[LAYER_OF[imported]][0]
        for imported in GRAPH[module]
        if LAYER_OF[imported] > LAYER_OF[module]
    }
    assert not upward, f"{module} ({LAYERS[LAYER_OF[module]][0]}) imports from above: {upward}"


def test_no_import_cycles() -> None:
    """No module depends on itself through others."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, " -> ".join([*visiting, module])
        visiting.append(module)
        for imported in GRAPH[module]:
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in GRAPH:
        visit(module)


def test_the_core_imports_no_optional_integration() -> None:
    """Prometheus and the HTTP cache hang off the pools' extensions; only entry points load them."""
    optional = {"prometheus", "_cache", "_multiproc", "_otel"}
    entry = {module for _, modules in LAYERS[-1:] for module in modules}
    for module, imported in GRAPH.items():
        if module not in entry and module not in optional:
            assert not imported & optional, module


def test_the_graph_is_read_right() -> None:
    """The reader sees relative, absolute and lazy imports (else the checks above prove nothing)."""
    assert "_call" in GRAPH["_adapter"]  # from ._call import Call
    assert "_origins" in GRAPH["_fast.exchange"]  # from wsgi_pool._origins import ...
    assert "_fast.seams" in GRAPH["_connection"]  # from ._fast import seams
    assert "_worker" in GRAPH["_process"]  # imported inside a function
    assert "prometheus" in GRAPH["_integrations"]  # imported inside a function
    assert "_fast.response" in GRAPH["_fast.session"]  # from .response import ...


def test_the_architecture_page_names_every_module_in_its_layer() -> None:
    """ARCHITECTURE.md's table lists each module once, in the layer this test holds it to."""
    page = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    named: dict[str, str] = {}
    for row in page.splitlines():
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if len(cells) == 3 and cells[1].startswith("`"):
            for module in cells[1].replace("`", "").replace("/", ".").split(","):
                named[module.strip()] = cells[0]
    short = {"entry": 9, "integration": 8, "client": 7, "process": 6, "adapter": 5, "call": 4}
    short |= {"pool": 3, "connection": 2, "fast path": 1, "foundation": 0}
    assert set(named) == set(LAYER_OF) - {"_fast", "__main__"}
    for module, layer in named.items():
        assert short[layer] == LAYER_OF[module], (module, layer)
