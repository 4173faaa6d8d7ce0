"""The arrows of the house, read from the import graph of the source (every import statement, including those
inside functions; only ``if TYPE_CHECKING:`` blocks are left out, as they never run):

- the kernel (``spotdiff``) imports no service, gateway or worker, except its command line, which starts each
  part lazily in the command that needs it;
- ``httpkit`` imports only the kernel; the gateway and the workers import neither each other nor the services;
  the services import neither the gateway nor the workers;
- model libraries are imported under ``services/`` only;

and, by importing them for real, the kernel (all of it), httpkit, the gateway and the workers load no model
library.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("spotdiff", "httpkit", "services", "gateway", "workers")
MODEL_LIBRARIES = ("torch", "torchvision", "diffusers", "transformers", "open_clip", "segment_anything", "accelerate")
# what each part may import of the others (itself always)
MAY_IMPORT = {
    "spotdiff": set(),
    "httpkit": {"spotdiff"},
    "services": {"spotdiff", "httpkit"},
    "gateway": {"spotdiff", "httpkit"},
    "workers": {"spotdiff"},
}
ENTRY_POINT = "spotdiff.cli"  # the command line: the one kernel module that starts the other parts


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_import_module(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
        and bool(node.args)
        and isinstance(node.args[0], ast.JoinedStr | ast.Constant)
    )


def imports_of(path: Path) -> Iterator[str]:
    """The modules ``path`` imports when it runs (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif _is_import_module(node):  # importlib.import_module("pkg.mod") or (f"pkg.{name}.mod")
            first = node.args[0]
            text = first.value if isinstance(first, ast.Constant) else ast.unparse(first)
            yield str(text).strip("f'\"").split("{")[0].rstrip(".")


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            graph[module_name(path)] = set(imports_of(path))
    return graph


GRAPH = import_graph()


def part(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_is_read_from_the_code() -> None:
    # the reading itself: a few arrows every version of the house has
    assert "spotdiff.protocol.errors" in GRAPH["spotdiff.clients"]
    assert "services" in GRAPH["services.registry"]  # an import_module of f"services.{name}..."
    assert any(name.startswith("services.registry") for name in GRAPH[ENTRY_POINT])  # a lazy import, seen
    assert any(name.startswith("torch") for module, names in GRAPH.items() for name in names)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_every_import_points_down(module: str) -> None:
    if module == ENTRY_POINT:
        return
    own = part(module)
    wrong = sorted(
        name
        for name in GRAPH[module]
        if part(name) in PACKAGES and part(name) != own and part(name) not in MAY_IMPORT[own]
    )
    assert not wrong, f"{module} imports {wrong}"


def test_model_libraries_are_imported_by_services_only() -> None:
    found = sorted(
        (module, name)
        for module, names in GRAPH.items()
        for name in names
        if part(name) in MODEL_LIBRARIES and part(module) != "services"
    )
    assert not found


def test_importing_the_kernel_httpkit_gateway_and_workers_loads_no_model_library() -> None:
    light = [
        name
        for package in ("spotdiff", "httpkit", "gateway", "workers")
        for name in [package, *(info.name for info in pkgutil.walk_packages([str(ROOT / package)], f"{package}."))]
    ]
    assert "spotdiff.pipeline.stages" in light and "workers.tasks" in light
    code = (
        "import importlib, sys\n"
        f"for name in {light!r}: importlib.import_module(name)\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {MODEL_LIBRARIES!r})\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]


def test_creating_every_service_app_loads_no_model_library() -> None:
    """A service answers /healthz at once and loads its model in the background: creating its app (and the
    registry) imports no model library; only loading the model does."""
    code = (
        "import sys\n"
        "from services.registry import create_app\n"
        "from spotdiff.settings import SERVICE_NAMES, Settings\n"
        "for name in SERVICE_NAMES: create_app(name, Settings())\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {MODEL_LIBRARIES!r})\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
